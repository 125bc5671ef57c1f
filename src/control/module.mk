SRCS += src/control/control.c src/control/client.c
