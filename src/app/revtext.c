/*
 * app/revtext.c - `wmproxy reverse-proxy` as a config: the flags become
 * the [http] section wmproxy builds for them (an upstream "server" and
 * one location proxying everything to it), written as TOML and loaded
 * like any file, so flags and files share every check and behaviour.
 * `wmproxy file-server` likewise (one server, one file_server location),
 * and `wmproxy ws-proxy` (one [[stream.server]] bridge).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"

/* s as a TOML basic string. */
static void toml_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\') {
            fprintf(f, "\\%c", *p);
        } else if (*p < 0x20 || *p == 0x7f) {
            fprintf(f, "\\u%04x", *p);
        } else {
            fputc(*p, f);
        }
    }
    fputc('"', f);
}

int wm_app_reverse_text(struct wm_app_opts *o)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    if (f == NULL) {
        fprintf(stderr, "wmproxy: out of memory\n");
        return -1;
    }
    /* As wmproxy: no control API unless asked for with --control. */
    fprintf(f, "disable_control = %s\n", o->control_set ? "false" : "true");
    fprintf(f, "[http]\n");
    if (o->rev.access_log != NULL) {
        /* --access-log "path [level]": a log name of its own, the main format */
        fprintf(f, "access_log = \"cli main\"\nlog_names = { cli = ");
        toml_str(f, o->rev.access_log);
        fprintf(f, " }\n");
    }
    fprintf(f, "[[http.upstream]]\nname = \"server\"\nserver = [{ addr = ");
    toml_str(f, o->rev.to);
    fprintf(f, " }]\n[[http.server]]\nbind_addr = ");
    toml_str(f, o->rev.from);
    fprintf(f, "\nheaders = [");
    for (size_t i = 0; i < o->rev.headers.n; i++) {
        fprintf(f, "%s", i ? ", " : "");
        toml_str(f, o->rev.headers.v[i]);
    }
    fprintf(f, "]\n[[http.server.location]]\nrule = \"/\"\nproxy_url = \"%s://server\"\n",
            o->rev.tls ? "https" : "http");
    if (o->rev.ws) {
        fprintf(f, "is_ws = true\n");
    }
    if (fclose(f) != 0 || text == NULL) {
        free(text);
        fprintf(stderr, "wmproxy: out of memory\n");
        return -1;
    }
    o->config_text = text;
    o->config_name = "reverse-proxy flags";
    return 0;
}

/* key = "value" when v is set */
static void toml_kv(FILE *f, const char *key, const char *v)
{
    if (v != NULL) {
        fprintf(f, "%s = ", key);
        toml_str(f, v);
        fputc('\n', f);
    }
}

static int files_location(FILE *f, const struct wm_app_opts *o)
{
    fprintf(f, "[[http.server.location]]\nrule = \"/\"\n[http.server.location.file_server]\n");
    toml_kv(f, "root", o->files.root != NULL && o->files.root[0] != '\0' ? o->files.root : ".");
    fprintf(f, "browse = %s\ncors = %s\nfollow_symlinks = %s\n", o->files.browse ? "true" : "false",
            o->files.cors ? "true" : "false", o->files.follow ? "true" : "false");
    toml_kv(f, "robots", o->files.robots);
    toml_kv(f, "path404", o->files.path404);
    toml_kv(f, "cache_time", o->files.cache_time);
    if (o->files.ext.n > 0) {
        fprintf(f, "[http.server.location.file_server.ext_mimetype]\n");
    }
    for (size_t i = 0; i < o->files.ext.n; i++) {
        const char *e = o->files.ext.v[i];
        const char *eq = strchr(e, '=');
        char ext[64];
        if (eq == NULL || eq == e || eq[1] == '\0' || (size_t)(eq - e) >= sizeof(ext)) {
            fprintf(stderr, "wmproxy: --ext-mimetype: expected EXT=TYPE, like md=text/markdown, "
                            "got \"%s\"\n", e);
            return -1;
        }
        snprintf(ext, sizeof(ext), "%.*s", (int)(eq - e), e);
        toml_str(f, ext);
        fprintf(f, " = ");
        toml_str(f, eq + 1);
        fputc('\n', f);
    }
    return 0;
}

int wm_app_files_text(struct wm_app_opts *o)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f;

    if (o->files.listen_ssl != NULL && (o->files.cert == NULL || o->files.key == NULL)) {
        fprintf(stderr, "wmproxy: --listen-ssl needs --cert FILE and --key FILE\n");
        return -1;
    }
    f = open_memstream(&text, &len);
    if (f == NULL) {
        fprintf(stderr, "wmproxy: out of memory\n");
        return -1;
    }
    fprintf(f, "disable_control = %s\n[http]\n", o->control_set ? "false" : "true");
    if (o->files.access_log != NULL) {
        fprintf(f, "access_log = \"cli main\"\nlog_names = { cli = ");
        toml_str(f, o->files.access_log);
        fprintf(f, " }\n");
    }
    fprintf(f, "[[http.server]]\n");
    toml_kv(f, "bind_addr", o->files.listen);
    toml_kv(f, "bind_ssl", o->files.listen_ssl);
    toml_kv(f, "cert", o->files.cert);
    toml_kv(f, "key", o->files.key);
    toml_kv(f, "up_name", o->files.domain);
    fprintf(f, "headers = [");
    for (size_t i = 0; i < o->files.headers.n; i++) {
        fprintf(f, "%s", i ? ", " : "");
        toml_str(f, o->files.headers.v[i]);
    }
    fprintf(f, "]\n");
    if (files_location(f, o) < 0) {
        fclose(f);
        free(text);
        return -1;
    }
    if (fclose(f) != 0 || text == NULL) {
        free(text);
        fprintf(stderr, "wmproxy: out of memory\n");
        return -1;
    }
    o->config_text = text;
    o->config_name = "file-server flags";
    return 0;
}

int wm_app_wsproxy_text(struct wm_app_opts *o)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f;
    const char *m = o->ws.mode;
    bool ws_in = strcmp(m, "ws2tcp") == 0;

    if (!ws_in && strcmp(m, "tcp2ws") != 0 && strcmp(m, "tcp2wss") != 0) {
        fprintf(stderr, "wmproxy: --mode: expected ws2tcp, tcp2ws or tcp2wss\n");
        return -1;
    }
    if ((f = open_memstream(&text, &len)) == NULL) {
        fprintf(stderr, "wmproxy: out of memory\n");
        return -1;
    }
    fprintf(f, "disable_control = %s\n[[stream.server]]\nbind_addr = ",
            o->control_set ? "false" : "true");
    toml_str(f, o->rev.from);
    fprintf(f, "\nbind_mode = \"%s\"\nproxy_url = ", m);
    /* -t is host:port or a URL; a bare address gets the mode's scheme */
    if (strstr(o->rev.to, "://") == NULL) {
        char *url = NULL;
        size_t ulen = 0;
        FILE *u = open_memstream(&url, &ulen);
        if (u != NULL) {
            fprintf(u, "%s://%s", ws_in ? "tcp" : strcmp(m, "tcp2wss") == 0 ? "wss" : "ws",
                    o->rev.to);
            fclose(u);
        }
        toml_str(f, url != NULL ? url : "");
        free(url);
    } else {
        toml_str(f, o->rev.to);
    }
    if (o->ws.domain != NULL) {
        fprintf(f, "\ndomain = ");
        toml_str(f, o->ws.domain);
    }
    if (o->rev.access_log != NULL) {
        char path[1024];
        snprintf(path, sizeof(path), "%.*s", (int)strcspn(o->rev.access_log, " "),
                 o->rev.access_log);
        fprintf(f, "\naccess_log = ");
        toml_str(f, path);
    }
    fprintf(f, "\n");
    if (fclose(f) != 0 || text == NULL) {
        free(text);
        fprintf(stderr, "wmproxy: out of memory\n");
        return -1;
    }
    o->config_text = text;
    o->config_name = "ws-proxy flags";
    return 0;
}
