SRCS += src/http/head.c src/http/parser.c
SRCS += src/http/util.c
