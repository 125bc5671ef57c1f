SRCS += src/core/err.c src/core/log.c src/core/util.c src/core/arena.c src/core/json.c
SRCS += src/core/worker.c src/core/relay.c src/core/splice.c src/core/bev.c src/core/service.c
SRCS += src/core/proxyflags.c src/core/cli.c
SRCS += src/core/authfail.c
SRCS += src/core/fsutil.c src/core/metrics.c src/core/logq.c
SRCS += src/core/sdnotify.c src/core/mem.c
