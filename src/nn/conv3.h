/*
 * conv3.h: direct kernels for 3x3 convolutions of stride 1 and padding 1
 * over planes whose rows are whole or half AVX-512 vectors (conv3.c).
 * layers.c sends such convolutions here when mg_conv3_ok (forward) and
 * mg_conv3_backward_ok say so.
 */
#ifndef MIAGRID_NN_CONV3_H
#define MIAGRID_NN_CONV3_H

#include <stddef.h>

#include "nn/nn_internal.h"

/* 1 if this process runs the direct kernels (MIAGRID_CONV, see conv3.c). */
int mg_conv3_active(void);

/* 1 if s is a convolution the direct kernels take and they are active. */
int mg_conv3_ok(const mg_conv2d_shape *s);

/* 1 if the direct kernels take the backward of s too (rows of 8 take only
 * the forward). */
int mg_conv3_backward_ok(const mg_conv2d_shape *s);

/* Floats of scratch the two below need for s. */
size_t mg_conv3_scratch(const mg_conv2d_shape *s);

/* out = act(conv(inp, w) + b), act MG_NO_ACT or MG_ACT_RELU, b may be NULL.
 * With sums, also sums each output plane for the batch norm after it
 * (mg_bn_plane_sums) where that batch norm sums by plane: returns 1 when it
 * did, 0 otherwise. */
int mg_conv3_forward(float *out, mg_layout lo, const float *inp, mg_layout li, const float *w, const float *b,
                     const mg_conv2d_shape *s, float *scratch, int act, double *sums);

/* dinp (+)= the input gradient (written with overwrite; dinp may be NULL)
 * and dw += the weight gradient. */
void mg_conv3_backward(float *dinp, mg_layout li, int overwrite, float *dw, const float *dout, mg_layout lo,
                       const float *inp, const float *w, const mg_conv2d_shape *s, float *scratch);

#endif
