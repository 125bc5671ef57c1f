# L4 forwarding and WebSocket bridges
SRCS += src/stream/stream.c src/stream/tcp.c src/stream/udp.c src/stream/ws.c src/stream/wsbridge.c
