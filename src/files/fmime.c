/*
 * files/fmime.c - Content-Type by file extension: ext_mimetype, then a
 * built-in table of common types (text types get the charset), then
 * default_mimetype.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "files/files_int.h"

struct mime_row {
    const char *ext;
    const char *type;
};

/* Sorted by extension (bsearch). */
static const struct mime_row table[] = {
    {"7z", "application/x-7z-compressed"},
    {"aac", "audio/aac"},
    {"apng", "image/apng"},
    {"avif", "image/avif"},
    {"bin", "application/octet-stream"},
    {"bmp", "image/bmp"},
    {"bz2", "application/x-bzip2"},
    {"c", "text/plain"},
    {"cjs", "text/javascript"},
    {"conf", "text/plain"},
    {"css", "text/css"},
    {"csv", "text/csv"},
    {"doc", "application/msword"},
    {"docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
    {"eot", "application/vnd.ms-fontobject"},
    {"epub", "application/epub+zip"},
    {"flac", "audio/flac"},
    {"gif", "image/gif"},
    {"gz", "application/gzip"},
    {"h", "text/plain"},
    {"htm", "text/html"},
    {"html", "text/html"},
    {"ico", "image/x-icon"},
    {"ics", "text/calendar"},
    {"iso", "application/x-iso9660-image"},
    {"jar", "application/java-archive"},
    {"jpeg", "image/jpeg"},
    {"jpg", "image/jpeg"},
    {"js", "text/javascript"},
    {"json", "application/json"},
    {"jsonld", "application/ld+json"},
    {"log", "text/plain"},
    {"m3u8", "application/vnd.apple.mpegurl"},
    {"m4a", "audio/mp4"},
    {"map", "application/json"},
    {"md", "text/markdown"},
    {"mjs", "text/javascript"},
    {"mkv", "video/x-matroska"},
    {"mov", "video/quicktime"},
    {"mp3", "audio/mpeg"},
    {"mp4", "video/mp4"},
    {"mpeg", "video/mpeg"},
    {"oga", "audio/ogg"},
    {"ogg", "audio/ogg"},
    {"ogv", "video/ogg"},
    {"otf", "font/otf"},
    {"pdf", "application/pdf"},
    {"png", "image/png"},
    {"ppt", "application/vnd.ms-powerpoint"},
    {"rar", "application/vnd.rar"},
    {"rs", "text/plain"},
    {"rss", "application/rss+xml"},
    {"rtf", "application/rtf"},
    {"sh", "text/x-shellscript"},
    {"svg", "image/svg+xml"},
    {"tar", "application/x-tar"},
    {"tif", "image/tiff"},
    {"tiff", "image/tiff"},
    {"toml", "application/toml"},
    {"ts", "video/mp2t"},
    {"ttf", "font/ttf"},
    {"txt", "text/plain"},
    {"wasm", "application/wasm"},
    {"wav", "audio/wav"},
    {"webm", "video/webm"},
    {"webmanifest", "application/manifest+json"},
    {"webp", "image/webp"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"xhtml", "application/xhtml+xml"},
    {"xls", "application/vnd.ms-excel"},
    {"xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
    {"xml", "application/xml"},
    {"yaml", "application/yaml"},
    {"yml", "application/yaml"},
    {"zip", "application/zip"},
    {"zst", "application/zstd"},
};

static int row_cmp(const void *k, const void *r)
{
    return strcasecmp(k, ((const struct mime_row *)r)->ext);
}

/* Types that carry text: they get the charset. */
static bool is_text(const char *t)
{
    return strncmp(t, "text/", 5) == 0 || strcmp(t, "application/json") == 0 ||
           strcmp(t, "application/xml") == 0 || strcmp(t, "image/svg+xml") == 0 ||
           strcmp(t, "application/manifest+json") == 0 || strcmp(t, "application/ld+json") == 0 ||
           strcmp(t, "application/xhtml+xml") == 0 || strcmp(t, "application/toml") == 0 ||
           strcmp(t, "application/yaml") == 0;
}

bool files_compressible(const char *ctype)
{
    return is_text(ctype) || strncmp(ctype, "application/javascript", 22) == 0 ||
           strncmp(ctype, "application/wasm", 16) == 0 ||
           strncmp(ctype, "application/rss+xml", 19) == 0 ||
           strncmp(ctype, "image/x-icon", 12) == 0 || strncmp(ctype, "image/bmp", 9) == 0 ||
           strncmp(ctype, "font/ttf", 8) == 0 || strncmp(ctype, "font/otf", 8) == 0;
}

const char *files_mime(const struct wm_files *fs, const char *name, char *buf, size_t cap)
{
    const char *slash = strrchr(name, '/');
    const char *base = slash != NULL ? slash + 1 : name;
    const char *dot = strrchr(base, '.');
    const struct mime_row *row;

    if (dot == NULL || dot == base || dot[1] == '\0') {
        return fs->default_mime;
    }
    for (size_t i = 0; i < fs->next; i++) {
        if (strcasecmp(fs->ext[i].ext, dot + 1) == 0) {
            return fs->ext[i].type;
        }
    }
    row = bsearch(dot + 1, table, sizeof(table) / sizeof(table[0]), sizeof(table[0]), row_cmp);
    if (row == NULL) {
        return fs->default_mime;
    }
    if (!is_text(row->type)) {
        return row->type;
    }
    snprintf(buf, cap, "%s; charset=%s", row->type, fs->charset);
    return buf;
}
