/*
 * tests/fuzz/fuzz_proxyproto.c - libFuzzer target: the PROXY protocol
 * parser (net/proxyproto.h) and the tunnel's OPEN peer field on arbitrary
 * bytes. A header that parses must say a length within the input, and its
 * addresses, built again, must parse back to the same ones.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/proxyproto.h"
#include "tunnel/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same_addrs(const struct wm_pp_info *a, const struct wm_pp_info *b)
{
    if (!b->known || a->srclen != b->srclen || a->dstlen != b->dstlen ||
        memcmp(&a->src, &b->src, a->srclen) != 0 || memcmp(&a->dst, &b->dst, a->dstlen) != 0) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct wm_pp_info info;
    struct wm_pp_info again;
    uint8_t out[WM_PP_BUILD_MAX];
    const char *why = NULL;
    int r = wm_pp_parse(data, size, &info, &why);

    if (r < -1 || r > (int)size || (r == -1 && why == NULL)) {
        abort();
    }
    if (r > 0 && info.known && info.src.ss_family == info.dst.ss_family) {
        for (int v = WM_PP_V1; v <= WM_PP_V2; v++) {
            size_t n = wm_pp_build(v, (struct sockaddr *)&info.src, (struct sockaddr *)&info.dst,
                                   out, sizeof(out));
            if (n == 0 || wm_pp_parse(out, n, &again, NULL) != (int)n) {
                abort();
            }
            /* an IPv4-mapped pair comes back as TCP4: compare v6 inputs only
             * when they are not mapped */
            if (info.src.ss_family == AF_INET) {
                same_addrs(&info, &again);
            }
        }
    }
    struct wm_tun_peer pe;
    struct wm_tun_str s = {(const char *)data, size < 4096 ? size : 4096};
    wm_tun_peer_parse(s, &pe);
    return 0;
}
