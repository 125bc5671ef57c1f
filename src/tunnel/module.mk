SRCS += src/tunnel/frame.c src/tunnel/mux.c src/tunnel/mux_stream.c src/tunnel/mux_hs.c src/tunnel/mux_sock.c \
        src/tunnel/mux_recv.c src/tunnel/bridge.c src/tunnel/refuse.c \
        src/tunnel/client.c src/tunnel/server.c src/tunnel/http_map.c src/tunnel/node.c \
        src/tunnel/node_tls.c src/tunnel/authz.c src/tunnel/center.c src/tunnel/ports.c src/tunnel/udp_map.c
SRCS += src/tunnel/tmetrics.c
SRCS += src/tunnel/server_cluster.c
