# HTTP/2 downstream (nghttp2): streams through the HTTP/1 engine
SRCS += src/h2/h2.c src/h2/h2_stream.c src/h2/h2_head.c src/h2/h2_up.c
