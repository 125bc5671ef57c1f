SRCS += src/core/err.c
