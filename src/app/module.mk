SRCS += src/app/app.c src/app/services.c src/app/proc.c
SRCS += src/app/gencert.c src/app/revtext.c src/app/obs.c src/app/status.c
