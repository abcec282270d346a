/* What the native helper's C files share: the mark on the functions gpuzarr calls. */
#ifndef GPUZARR_EXPORT_H
#define GPUZARR_EXPORT_H

#if defined(_WIN32)
#define GPUZARR_EXPORT __declspec(dllexport)
#else
#define GPUZARR_EXPORT
#endif

#endif
