#include "CImageCodec.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

// Images larger than this are refused before allocating (a corrupt header could claim 65535^2).
#define MAX_PIXELS (64L * 1024 * 1024)

static void set_error(char *err, size_t errlen, const char *message) {
    if (err && errlen > 0) {
        snprintf(err, errlen, "%s", message);
    }
}

// MARK: JPEG

struct jpeg_error_context {
    struct jpeg_error_mgr manager;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
    int truncated;
};

static void jpeg_error_exit(j_common_ptr info) {
    struct jpeg_error_context *context = (struct jpeg_error_context *)info->err;
    (*info->err->format_message)(info, context->message);
    longjmp(context->jump, 1);
}

// Warnings are not printed. libjpeg pads a file cut short with gray and only warns, so the warnings that
// mean "data ended early" are remembered and turned into an error; benign ones (extraneous bytes) pass,
// as they do in PIL.
static void jpeg_quiet_message(j_common_ptr info, int level) {
    if (level < 0) {
        struct jpeg_error_context *context = (struct jpeg_error_context *)info->err;
        info->err->num_warnings++;
        int code = info->err->msg_code;
        if (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER) {
            context->truncated = 1;
        }
    }
}

int mile_jpeg_decode(const unsigned char *data, size_t len, unsigned char **pixels, int *width, int *height,
                     int *channels, char *err, size_t errlen) {
    struct jpeg_decompress_struct info;
    struct jpeg_error_context context;
    unsigned char *volatile buffer = NULL;
    *pixels = NULL;
    info.err = jpeg_std_error(&context.manager);
    context.manager.error_exit = jpeg_error_exit;
    context.manager.emit_message = jpeg_quiet_message;
    context.message[0] = 0;
    context.truncated = 0;
    if (setjmp(context.jump)) {
        set_error(err, errlen, context.message[0] ? context.message : "JPEG decode error");
        jpeg_destroy_decompress(&info);
        free(buffer);
        return 1;
    }
    jpeg_create_decompress(&info);
    jpeg_mem_src(&info, data, (unsigned long)len);
    jpeg_read_header(&info, TRUE);
    if (info.num_components == 1) {
        info.out_color_space = JCS_GRAYSCALE;
    } else if (info.jpeg_color_space == JCS_CMYK || info.jpeg_color_space == JCS_YCCK) {
        info.out_color_space = JCS_CMYK;
    } else {
        info.out_color_space = JCS_RGB;
    }
    jpeg_start_decompress(&info);
    long w = info.output_width, h = info.output_height, c = info.output_components;
    if (w <= 0 || h <= 0 || w * h > MAX_PIXELS || (c != 1 && c != 3 && c != 4)) {
        set_error(err, errlen, "JPEG has an unsupported size or channel count");
        jpeg_destroy_decompress(&info);
        return 2;
    }
    buffer = malloc((size_t)(w * h * c));
    if (!buffer) {
        set_error(err, errlen, "out of memory");
        jpeg_destroy_decompress(&info);
        return 3;
    }
    while (info.output_scanline < info.output_height) {
        JSAMPROW row = buffer + (size_t)info.output_scanline * (size_t)(w * c);
        jpeg_read_scanlines(&info, &row, 1);
    }
    // libjpeg fills missing data with gray and warns; a file cut short must not pass as an image.
    int truncated = context.truncated;
    jpeg_finish_decompress(&info);
    jpeg_destroy_decompress(&info);
    if (truncated || context.truncated) {
        set_error(err, errlen, "JPEG data is truncated (premature end of data)");
        free(buffer);
        return 4;
    }
    if (c == 4) {
        // Adobe CMYK JPEGs are stored inverted; convert to RGB the way PIL's convert('RGB') does.
        unsigned char *rgb = malloc((size_t)(w * h * 3));
        if (!rgb) {
            free(buffer);
            set_error(err, errlen, "out of memory");
            return 3;
        }
        for (long i = 0; i < w * h; i++) {
            int k = buffer[i * 4 + 3];
            for (int j = 0; j < 3; j++) {
                rgb[i * 3 + j] = (unsigned char)((buffer[i * 4 + j] * k + 127) / 255);
            }
        }
        free(buffer);
        buffer = rgb;
        c = 3;
    }
    *pixels = buffer;
    *width = (int)w;
    *height = (int)h;
    *channels = (int)c;
    return 0;
}

struct jpeg_memory_destination {
    unsigned char *data;
    unsigned long size;
};

int mile_jpeg_encode(const unsigned char *pixels, int width, int height, int channels, int quality,
                     unsigned char **out, size_t *outlen, char *err, size_t errlen) {
    struct jpeg_compress_struct info;
    struct jpeg_error_context context;
    struct jpeg_memory_destination destination = {NULL, 0};
    *out = NULL;
    *outlen = 0;
    if (channels != 1 && channels != 3) {
        set_error(err, errlen, "JPEG encoding takes 1 or 3 channels");
        return 2;
    }
    info.err = jpeg_std_error(&context.manager);
    context.manager.error_exit = jpeg_error_exit;
    context.manager.emit_message = jpeg_quiet_message;
    context.message[0] = 0;
    context.truncated = 0;
    if (setjmp(context.jump)) {
        set_error(err, errlen, context.message[0] ? context.message : "JPEG encode error");
        jpeg_destroy_compress(&info);
        free(destination.data);
        return 1;
    }
    jpeg_create_compress(&info);
    jpeg_mem_dest(&info, &destination.data, &destination.size);
    info.image_width = (JDIMENSION)width;
    info.image_height = (JDIMENSION)height;
    info.input_components = channels;
    info.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&info);
    jpeg_set_quality(&info, quality, TRUE);
    jpeg_start_compress(&info, TRUE);
    while (info.next_scanline < info.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)info.next_scanline * (size_t)width * (size_t)channels);
        jpeg_write_scanlines(&info, &row, 1);
    }
    jpeg_finish_compress(&info);
    jpeg_destroy_compress(&info);
    *out = destination.data;
    *outlen = destination.size;
    return 0;
}

// MARK: PNG

struct png_context {
    jmp_buf jump;
    char message[MILE_CODEC_ERRLEN];
    const unsigned char *data;
    size_t length;
    size_t offset;
    unsigned char *out;
    size_t out_length;
    size_t out_capacity;
    int out_failed;
};

static void png_error_handler(png_structp png, png_const_charp message) {
    struct png_context *context = (struct png_context *)png_get_error_ptr(png);
    snprintf(context->message, sizeof context->message, "%s", message);
    longjmp(context->jump, 1);
}

static void png_warning_handler(png_structp png, png_const_charp message) {
    (void)png;
    (void)message;
}

static void png_read_memory(png_structp png, png_bytep target, size_t count) {
    struct png_context *context = (struct png_context *)png_get_io_ptr(png);
    if (count > context->length - context->offset) {
        png_error(png, "PNG data is truncated");
    }
    memcpy(target, context->data + context->offset, count);
    context->offset += count;
}

int mile_png_decode(const unsigned char *data, size_t len, unsigned char **pixels, int *width, int *height,
                    int *channels, char *err, size_t errlen) {
    struct png_context context;
    memset(&context, 0, sizeof context);
    context.data = data;
    context.length = len;
    *pixels = NULL;
    unsigned char *volatile buffer = NULL;
    png_bytep *volatile rows = NULL;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &context, png_error_handler,
                                             png_warning_handler);
    if (!png) {
        set_error(err, errlen, "cannot create PNG reader");
        return 3;
    }
    png_infop info = png_create_info_struct(png);
    if (!info || setjmp(context.jump)) {
        set_error(err, errlen, context.message[0] ? context.message : "PNG decode error");
        png_destroy_read_struct(&png, info ? &info : NULL, NULL);
        free(buffer);
        free(rows);
        return 1;
    }
    png_set_read_fn(png, &context, png_read_memory);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    if ((long)w * (long)h > MAX_PIXELS) {
        png_error(png, "PNG is too large");
    }
    // Expand every colour type to 8-bit RGBA.
    png_set_expand(png);
    png_set_strip_16(png);
    png_set_gray_to_rgb(png);
    png_set_filler(png, 0xFF, PNG_FILLER_AFTER);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t stride = png_get_rowbytes(png, info);
    if (stride != (size_t)w * 4) {
        png_error(png, "unexpected PNG row size after expansion");
    }
    buffer = malloc(stride * h);
    rows = malloc(sizeof(png_bytep) * h);
    if (!buffer || !rows) {
        png_error(png, "out of memory");
    }
    for (png_uint_32 y = 0; y < h; y++) {
        rows[y] = buffer + y * stride;
    }
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    *pixels = buffer;
    *width = (int)w;
    *height = (int)h;
    *channels = 4;
    return 0;
}

static void png_write_memory(png_structp png, png_bytep source, size_t count) {
    struct png_context *context = (struct png_context *)png_get_io_ptr(png);
    if (context->out_length + count > context->out_capacity) {
        size_t capacity = context->out_capacity ? context->out_capacity : 4096;
        while (capacity < context->out_length + count) {
            capacity *= 2;
        }
        unsigned char *grown = realloc(context->out, capacity);
        if (!grown) {
            png_error(png, "out of memory");
        }
        context->out = grown;
        context->out_capacity = capacity;
    }
    memcpy(context->out + context->out_length, source, count);
    context->out_length += count;
}

static void png_flush_memory(png_structp png) {
    (void)png;
}

int mile_png_encode(const unsigned char *pixels, int width, int height, int channels,
                    unsigned char **out, size_t *outlen, char *err, size_t errlen) {
    struct png_context context;
    memset(&context, 0, sizeof context);
    *out = NULL;
    *outlen = 0;
    int color_type;
    switch (channels) {
    case 1: color_type = PNG_COLOR_TYPE_GRAY; break;
    case 3: color_type = PNG_COLOR_TYPE_RGB; break;
    case 4: color_type = PNG_COLOR_TYPE_RGB_ALPHA; break;
    default:
        set_error(err, errlen, "PNG encoding takes 1, 3 or 4 channels");
        return 2;
    }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &context, png_error_handler,
                                              png_warning_handler);
    if (!png) {
        set_error(err, errlen, "cannot create PNG writer");
        return 3;
    }
    png_infop info = png_create_info_struct(png);
    if (!info || setjmp(context.jump)) {
        set_error(err, errlen, context.message[0] ? context.message : "PNG encode error");
        png_destroy_write_struct(&png, info ? &info : NULL);
        free(context.out);
        return 1;
    }
    png_set_write_fn(png, &context, png_write_memory, png_flush_memory);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, color_type, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < height; y++) {
        png_write_row(png, (png_const_bytep)(pixels + (size_t)y * (size_t)width * (size_t)channels));
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    *out = context.out;
    *outlen = context.out_length;
    return 0;
}

void mile_codec_free(void *buffer) {
    free(buffer);
}
