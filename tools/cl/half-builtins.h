/*
 * half-builtins.h - declarations of the core OpenCL 1.2 half conversions that clmha's kernels
 * use (vload_half, vload_half4, vload_half16, vstore_half, vstore_half4, vstore_half16 on
 * __global pointers), for
 * tools/check-kernels.sh only. Clang 14 hides them from its default header once every
 * extension is disabled (-cl-ext=-all), although they are core OpenCL 1.2 and need no
 * cl_khr_fp16; declaring them here keeps the strict check on.
 */
float __attribute__((overloadable)) vload_half(size_t offset, const __global half *p);
float4 __attribute__((overloadable)) vload_half4(size_t offset, const __global half *p);
float16 __attribute__((overloadable)) vload_half16(size_t offset, const __global half *p);
void __attribute__((overloadable)) vstore_half(float data, size_t offset, __global half *p);
void __attribute__((overloadable)) vstore_half4(float4 data, size_t offset, __global half *p);
void __attribute__((overloadable)) vstore_half16(float16 data, size_t offset, __global half *p);
/* The same on __private pointers (gemm16.cl rounds values through a private 16-bit word). */
float __attribute__((overloadable)) vload_half(size_t offset, const __private half *p);
float4 __attribute__((overloadable)) vload_half4(size_t offset, const __private half *p);
void __attribute__((overloadable)) vstore_half(float data, size_t offset, __private half *p);
void __attribute__((overloadable)) vstore_half4(float4 data, size_t offset, __private half *p);
