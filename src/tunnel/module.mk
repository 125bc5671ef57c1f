SRCS += src/tunnel/frame.c src/tunnel/mux.c src/tunnel/mux_hs.c
