#ifndef MILE_CIMAGECODEC_H
#define MILE_CIMAGECODEC_H

#include <stddef.h>

// Small C wrappers around libjpeg and libpng. Both libraries report fatal errors by longjmp (libjpeg's
// default handler even calls exit()), which Swift cannot handle; these wrappers install error managers
// that jump back here and return a non-zero code with a message instead.
//
// Decoders return 8-bit pixels, row-major, interleaved: *channels is 1 (gray) or 3 (RGB) for JPEG and
// 4 (RGBA, every PNG colour type expanded) for PNG. The caller frees *pixels with mile_codec_free.
// Encoders take 1 (gray) or 3 (RGB) channels (PNG also 4) and return a malloc'd buffer in *out.
// Every function returns 0 on success; otherwise it writes a message into err (errlen bytes).

#define MILE_CODEC_ERRLEN 256

int mile_jpeg_decode(const unsigned char *data, size_t len, unsigned char **pixels, int *width, int *height,
                     int *channels, char *err, size_t errlen);
int mile_png_decode(const unsigned char *data, size_t len, unsigned char **pixels, int *width, int *height,
                    int *channels, char *err, size_t errlen);
int mile_jpeg_encode(const unsigned char *pixels, int width, int height, int channels, int quality,
                     unsigned char **out, size_t *outlen, char *err, size_t errlen);
int mile_png_encode(const unsigned char *pixels, int width, int height, int channels,
                    unsigned char **out, size_t *outlen, char *err, size_t errlen);
void mile_codec_free(void *buffer);

#endif
