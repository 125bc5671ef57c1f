# static files (file_server locations, wmproxy file-server)
SRCS += src/files/fbody.c src/files/fbrowse.c src/files/fcache.c src/files/fconf.c \
        src/files/fmime.c src/files/fparse.c src/files/fserve.c
