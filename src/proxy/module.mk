SRCS += src/proxy/socks_proto.c src/proxy/pconn.c src/proxy/service.c src/proxy/socks.c \
        src/proxy/socks_udp.c src/proxy/http_proxy.c
