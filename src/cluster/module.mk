SRCS += src/cluster/cluster.c src/cluster/cluster_redis.c src/cluster/cluster_peer.c \
        src/cluster/cluster_limit.c src/cluster/cluster_authfail.c src/cluster/cluster_tls.c \
        src/cluster/cluster_ev.c
