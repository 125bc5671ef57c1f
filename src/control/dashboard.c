/* The page's bytes, taken verbatim from dashboard.html by the assembler
 * (the Makefile makes this object depend on the file). */
#include "control/dashboard.h"

__asm__(".section .rodata\n"
        ".global wm_dashboard_html\n"
        ".global wm_dashboard_html_end\n"
        ".hidden wm_dashboard_html_end\n"
        ".type wm_dashboard_html, @object\n"
        "wm_dashboard_html:\n"
        ".incbin \"src/control/dashboard.html\"\n"
        "wm_dashboard_html_end:\n"
        ".byte 0\n"
        ".previous\n");

extern const char wm_dashboard_html_end[];

size_t wm_dashboard_size(void)
{
    return (size_t)(wm_dashboard_html_end - wm_dashboard_html);
}
