# reverse proxy
SRCS += src/reverse/alog.c src/reverse/health.c src/reverse/limit.c src/reverse/match.c src/reverse/pool.c src/reverse/rconf.c src/reverse/rconf_limit.c src/reverse/rconf_log.c src/reverse/rconf_up.c src/reverse/rev.c src/reverse/rev_up.c src/reverse/try.c \
        src/reverse/upstream.c src/reverse/upstream_pub.c
SRCS += src/reverse/rmetrics.c
