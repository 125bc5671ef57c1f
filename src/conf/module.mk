SRCS += src/conf/cval.c
SRCS += src/conf/cval_json.c
SRCS += src/conf/toml.c
SRCS += src/conf/toml_lex.c
SRCS += src/conf/toml_value.c
SRCS += src/conf/yaml.c
SRCS += src/conf/yaml_build.c
SRCS += src/conf/yaml_scalar.c
SRCS += src/conf/units.c src/conf/schema.c src/conf/config.c src/conf/config_http.c \
        src/conf/config_cluster.c
