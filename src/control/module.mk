SRCS += src/control/control.c src/control/client.c src/control/expo.c src/control/dashboard.c
