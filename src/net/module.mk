SRCS += src/net/addr.c src/net/dial.c src/net/listener.c src/net/lset.c src/net/conn.c
SRCS += src/net/tls.c src/net/tlspump.c
SRCS += src/net/certs.c src/net/proxyproto.c src/net/tlspin.c
SRCS += src/net/acl.c
