SRCS += src/net/addr.c src/net/dial.c src/net/listener.c src/net/lset.c src/net/conn.c
SRCS += src/net/tls.c src/net/tlspump.c src/net/tlsrec.c
SRCS += src/net/certs.c
