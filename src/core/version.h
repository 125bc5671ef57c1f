/* core/version.h - the one version string. */
#ifndef WM_CORE_VERSION_H
#define WM_CORE_VERSION_H

#define WM_VERSION "0.3.0"

#endif
