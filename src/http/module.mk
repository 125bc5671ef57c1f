SRCS += src/http/head.c src/http/hdr.c src/http/parser.c
SRCS += src/http/util.c
SRCS += src/http/fwd.c src/http/fwd_up.c src/http/fwd_head.c src/http/fwd_stream.c src/http/fwd_park.c
SRCS += src/http/fwd_stats.c src/http/fwd_h2.c src/http/fwd_timer.c src/http/fwd_body.c
