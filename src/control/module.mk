SRCS += src/control/control.c
