/*
 * clmha.h - the one public header of clmha, Keras's CachedMultiHeadAttention on OpenCL.
 *
 * clmha computes exactly what keras-hub's CachedMultiHeadAttention computes (see docs/api.md
 * for the Keras-to-C mapping) on any OpenCL 1.2 device: projections through CLBlast, masked
 * attention and the key/value cache splice in the library's own kernels.
 *
 * Conventions
 * -----------
 * - Every fallible function returns a clmha_status; CLMHA_OK (0) means success. On failure
 *   the calling thread's last error (clmha_last_error()) and, where a context is involved, the
 *   context's last error (clmha_context_last_error()) hold a message naming the argument and
 *   what was expected. Output pointers are written only on success.
 * - The library never prints, exits or aborts. Diagnostics go to the log callback given in
 *   clmha_context_options; with no callback, CLMHA_LOG=1 (or error|warn|info|debug) sends them
 *   to stderr.
 * - Shapes are row-major (C order), the last dimension contiguous, as in Keras.
 *
 * Ownership
 * ---------
 * - Objects made by *_create are freed by the matching *_release; releasing NULL is a no-op.
 * - A context made from an application's OpenCL objects retains them (clRetain*) and releases
 *   them when it is released; the application keeps its own references.
 * - A tensor that wraps an application's cl_mem retains it; the context must outlive every
 *   tensor and layer made from it.
 * - The library creates no events for the caller: work is enqueued on the context's in-order
 *   queue, and clmha_context_finish() (or any blocking read) waits for it.
 *
 * Threads
 * -------
 * - Distinct contexts may be used from distinct threads at the same time.
 * - One context, and every tensor and layer made from it, must be used by one thread at a time
 *   (the application serialises access). The thread-local clmha_last_error() is per thread.
 */
#ifndef CLMHA_H
#define CLMHA_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clmha_version.h"

#if defined(CLMHA_STATIC_DEFINE)
#define CLMHA_API
#elif defined(_WIN32)
#ifdef CLMHA_BUILDING
#define CLMHA_API __declspec(dllexport)
#else
#define CLMHA_API __declspec(dllimport)
#endif
#else
#define CLMHA_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------
 * Status codes
 * ---------------------------------------------------------------------------------------- */

/* The one list of status codes: X(name, message). It generates clmha_status, and the tables
 * behind clmha_status_name() and clmha_status_message(). */
#define CLMHA_STATUS_MAP(X)                                                                        \
    X(OK, "success")                                                                               \
    X(ERR_NULL_ARGUMENT, "a required pointer argument is NULL")                                    \
    X(ERR_INVALID_ARGUMENT, "an argument has an invalid value")                                    \
    X(ERR_SHAPE_MISMATCH, "a tensor's shape does not match what the call expects")                 \
    X(ERR_OUT_OF_RANGE, "an index or size is out of range")                                        \
    X(ERR_CONTEXT_MISMATCH, "the objects belong to different clmha contexts")                      \
    X(ERR_OUT_OF_HOST_MEMORY, "host memory allocation failed")                                     \
    X(ERR_OUT_OF_DEVICE_MEMORY, "device memory allocation failed")                                 \
    X(ERR_NO_PLATFORM, "no OpenCL platform is installed (is an ICD such as PoCL installed?)")      \
    X(ERR_DEVICE_NOT_FOUND, "no OpenCL device matches the selection")                              \
    X(ERR_OPENCL, "an OpenCL call failed")                                                         \
    X(ERR_CLBLAST, "a CLBlast call failed")                                                        \
    X(ERR_BUILD_FAILURE, "an OpenCL program failed to build")                                      \
    X(ERR_KERNEL_SOURCE, "a kernel source file is missing or unreadable")                          \
    X(ERR_DEVICE_LIMIT, "the work exceeds a limit of the device")                                  \
    X(ERR_UNSUPPORTED, "the requested feature is not supported in this configuration")             \
    X(ERR_IO, "a file could not be read or written")                                               \
    X(ERR_CONTEXT_BROKEN, "the context's device reported a fatal error; create a new context")

/** Status returned by every fallible clmha function. 0 is success. */
typedef enum clmha_status {
#define CLMHA__STATUS_ENUM(name, msg) CLMHA_##name,
    CLMHA_STATUS_MAP(CLMHA__STATUS_ENUM)
#undef CLMHA__STATUS_ENUM
        CLMHA_STATUS_COUNT
} clmha_status;

/** The code's name without prefix, e.g. "ERR_SHAPE_MISMATCH"; "UNKNOWN" for a bad value. */
CLMHA_API const char *clmha_status_name(clmha_status status);

/** A one-line English description of the code; "unknown status" for a bad value. */
CLMHA_API const char *clmha_status_message(clmha_status status);

/** The message of the last failed clmha call on this thread ("" if none yet). Valid until the
 *  thread's next failing clmha call. */
CLMHA_API const char *clmha_last_error(void);

/** The library version as "MAJOR.MINOR.PATCH". */
CLMHA_API const char *clmha_version_string(void);

/* ------------------------------------------------------------------------------------------
 * Logging
 * ---------------------------------------------------------------------------------------- */

typedef enum clmha_log_level {
    CLMHA_LOG_OFF = 0,
    CLMHA_LOG_ERROR = 1,
    CLMHA_LOG_WARN = 2,
    CLMHA_LOG_INFO = 3,
    CLMHA_LOG_DEBUG = 4
} clmha_log_level;

/** Receives one diagnostic line (no trailing newline). Called on the thread making the call. */
typedef void (*clmha_log_fn)(clmha_log_level level, const char *message, void *user);

/* ------------------------------------------------------------------------------------------
 * Devices
 * ---------------------------------------------------------------------------------------- */

/** One OpenCL device as enumerated by clmha_list_devices(). */
typedef struct clmha_device_info {
    size_t platform_index; /**< Index of the platform in clGetPlatformIDs order. */
    size_t device_index;   /**< Index of the device within its platform, all types. */
    cl_platform_id platform;
    cl_device_id device;
    char platform_name[128];
    char platform_vendor[128];
    char platform_version[128];
    char name[128];
    char vendor[128];
    char version[128];        /**< CL_DEVICE_VERSION. */
    char driver_version[128]; /**< CL_DRIVER_VERSION. */
    cl_device_type type;
    unsigned compute_units;
    uint64_t global_mem_bytes;
    uint64_t local_mem_bytes;
    uint64_t max_alloc_bytes;
    size_t max_work_group_size;
    size_t max_work_item_sizes[3];
    bool fp16; /**< cl_khr_fp16 is listed in CL_DEVICE_EXTENSIONS. */
    bool fp64; /**< cl_khr_fp64 is listed, or CL_DEVICE_DOUBLE_FP_CONFIG is non-zero. */
} clmha_device_info;

/** Short name of a device type: "gpu", "cpu", "accelerator", "default", "custom" or "other". */
CLMHA_API const char *clmha_device_type_name(cl_device_type type);

/**
 * The row of clmha's per-device tuning table that a context on this device uses unless the
 * settings' row names another (clmha_settings): for CPUs "cpu_narrow" where the device reports
 * fewer than 16 native float lanes (AVX2, SSE, NEON), else "cpu"; for GPUs the row of its
 * family (nvidia, amd_gpu, intel_gpu, mali, adreno, matched by vendor or device name), else
 * "gpu". The row gives the defaults of work-group,
 * chunk and tile sizes and of the projection kernels (docs/devices.md lists them). A static
 * string; NULL for a NULL @p info.
 */
CLMHA_API const char *clmha_device_tuning_name(const clmha_device_info *info);

/**
 * Lists every device of every platform, platforms in clGetPlatformIDs order and devices in
 * clGetDeviceIDs(CL_DEVICE_TYPE_ALL) order. On success *list (free it with
 * clmha_free_device_list) holds *count entries. No platform at all is CLMHA_ERR_NO_PLATFORM.
 */
CLMHA_API clmha_status clmha_list_devices(clmha_device_info **list, size_t *count);

/** Frees a list from clmha_list_devices(). NULL is a no-op. */
CLMHA_API void clmha_free_device_list(clmha_device_info *list);

struct clmha_context_options;

/**
 * Chooses a device from @p list the way clmha_context_create() would with @p options (NULL:
 * defaults and environment). On success *selected is the list index and @p reason (if not
 * NULL) says in words why it was chosen. A selection that matches nothing is
 * CLMHA_ERR_DEVICE_NOT_FOUND with a message listing every platform and device.
 *
 * Rules, each value from the options, else the environment, else unset:
 * - platform (CLMHA_PLATFORM): a platform index, or a case-insensitive substring of the
 *   platform name or vendor;
 * - device_type (CLMHA_DEVICE_TYPE): gpu, cpu, accelerator or all;
 * - device (CLMHA_DEVICE): an index among the devices left after the platform and type
 *   filters (within the platform when one is chosen, else across all platforms in order), or
 *   a case-insensitive substring of the device name;
 * - with no device given: the first GPU left after the filters (when the type is not set),
 *   else the first device left.
 */
CLMHA_API clmha_status clmha_select_device(const struct clmha_context_options *options,
                                           const clmha_device_info *list, size_t count,
                                           size_t *selected, char *reason, size_t reason_len);

/* ------------------------------------------------------------------------------------------
 * Context
 * ---------------------------------------------------------------------------------------- */

/** An OpenCL device, context, queue and the programs compiled for it. Opaque. */
typedef struct clmha_context clmha_context;

/** A setting that is on or off; CLMHA_SWITCH_DEFAULT (0) keeps the tuning row's choice. */
typedef enum clmha_switch {
    CLMHA_SWITCH_DEFAULT = 0,
    CLMHA_SWITCH_ON = 1,
    CLMHA_SWITCH_OFF = 2
} clmha_switch;

/** Which kernels take the projections: clmha's own GEMM or CLBlast as the tuning row decides,
 *  CLBlast for every product it can run, or the own GEMM for all. */
typedef enum clmha_gemm_choice {
    CLMHA_GEMM_AUTO = 0,
    CLMHA_GEMM_CLBLAST = 1,
    CLMHA_GEMM_OWN = 2
} clmha_gemm_choice;

/**
 * Launch settings that override the device's row of the tuning table (docs/devices.md,
 * "Settings", gives each one's meaning and default). A zero field (NULL, 0,
 * CLMHA_SWITCH_DEFAULT, CLMHA_GEMM_AUTO) keeps the row's value, so `clmha_settings s = {0};`
 * overrides nothing. The same settings as a string, "key=value,...", are
 * clmha_context_options.tune and the CLMHA_TUNE variable; each field's key is in its comment.
 * Values outside a setting's range fail clmha_context_create() with CLMHA_ERR_INVALID_ARGUMENT
 * and a message naming the key and the allowed values; a layer's creation checks what depends
 * on its shapes (split_wg and key_tile against what the device and its kernels allow).
 */
typedef struct clmha_settings {
    const char *row;             /**< row: a row of the tuning table by name (cpu, gpu, ...) */
    size_t max_work_group_size;  /**< max_work_group_size: caps the device's work-group size */
    size_t max_local_mem;        /**< max_local_mem: caps its local memory, bytes, >= 1024 */
    size_t max_item_loops;       /**< max_item_loops: caps a work-item's loop iterations, >= 16 */
    clmha_switch poison_buffers; /**< poison_buffers: new buffers filled with NaN */
    clmha_gemm_choice gemm;      /**< gemm: auto, clblast or own */
    size_t gemm_small_m;         /**< gemm_small_m: most rows for the own GEMM where CLBlast runs */
    size_t gemm_cols;            /**< gemm_cols: 4 or 32 columns a work-item of the own GEMM */
    size_t gemm_rows;            /**< gemm_rows: 1 to 32 rows a work-item, many-row products */
    size_t gemm_rows_few;        /**< gemm_rows_few: 1 to 8 rows a work-item, 3 to small_m rows */
    clmha_switch split;          /**< split: split attention */
    size_t split_wg;             /**< split_wg: its work-group size, a power of two */
    size_t split_chunk;          /**< split_chunk: the fewest keys of a chunk */
    clmha_switch heads;          /**< heads: the all-heads decode kernel (CPUs) */
    clmha_switch key_block;      /**< key_block: keys sixteen at a time (CPU kernels) */
    clmha_switch tile;           /**< tile: query tiles */
    size_t tile_rows;            /**< tile_rows: 1 to 16 rows of a CPU query tile */
    size_t key_tile;             /**< key_tile: keys of a GPU key tile, a power of two */
    clmha_switch tail;           /**< tail: gemm_tail, the fused last launch of a call */
    clmha_switch qkv_fuse;       /**< qkv_fuse: self-attention's projections as one product */
    clmha_switch prefetch;       /**< prefetch: CPU decode attention prefetches its next keys */
} clmha_settings;

/** Options for clmha_context_create(). Initialise with clmha_context_options_init(). Any NULL
 *  string falls back to its environment variable (when use_environment), else to the default. */
typedef struct clmha_context_options {
    const char *platform;    /**< Overrides CLMHA_PLATFORM. */
    const char *device;      /**< Overrides CLMHA_DEVICE. */
    const char *device_type; /**< Overrides CLMHA_DEVICE_TYPE. */
    /** Program-binary cache folder; "off" disables it. Overrides CLMHA_CACHE_DIR; default
     *  $XDG_CACHE_HOME/clmha, else $HOME/.cache/clmha. */
    const char *cache_dir;
    /** Load kernel sources from this folder instead of the embedded copies. Overrides
     *  CLMHA_KERNEL_DIR. */
    const char *kernel_dir;
    /** Read the CLMHA_* variables (device selection, CLMHA_CACHE_DIR, CLMHA_KERNEL_DIR,
     *  CLMHA_PROFILE, CLMHA_LOG, CLMHA_TUNE) for what the options leave unset (default true);
     *  false: no variable counts. */
    bool use_environment;
    /** Record the device time of every kernel (CLMHA_PROFILE=1 too); read it with
     *  clmha_context_take_profile(). Costs an event per launch. */
    bool profile;
    clmha_log_fn log_fn; /**< Diagnostics sink, or NULL (then CLMHA_LOG decides). */
    void *log_user;      /**< Passed to log_fn. */
    /** Most verbose level passed to log_fn; CLMHA_LOG_OFF (0) means "from CLMHA_LOG, else
     *  warn". */
    clmha_log_level log_level;
    /** Settings as a string, "key=value,..." (e.g. "split_wg=32,tail=0"; keys as in
     *  clmha_settings, switches 0/1 or off/on, gemm auto/clblast/own). Each key given here
     *  overrides the same key of CLMHA_TUNE (read when use_environment); NULL: none. */
    const char *tune;
    /** Settings as a struct (borrowed during clmha_context_create only); each field set
     *  overrides the same key of tune and CLMHA_TUNE. NULL: none. */
    const clmha_settings *settings;
    /** Load the device's tuned settings (clmha-tune, clmha_context_save_tuned) from the cache
     *  folder, under CLMHA_TUNE, tune and settings (default true; nothing with the cache off). */
    bool use_tuned;
} clmha_context_options;

/** Fills @p options with the defaults: everything unset, use_environment and use_tuned
 *  true. */
CLMHA_API void clmha_context_options_init(clmha_context_options *options);

/**
 * Creates a context on the selected device (see clmha_select_device) with an in-order queue.
 * @p options may be NULL (defaults and environment). On success *ctx is the new context.
 */
CLMHA_API clmha_status clmha_context_create(const clmha_context_options *options,
                                            clmha_context **ctx);

/**
 * Creates a context over an application's OpenCL objects, which are retained (not owned:
 * the application still releases its own references). @p queue must be an in-order queue on
 * @p device in @p cl_ctx. Device-selection fields of @p options are ignored.
 */
CLMHA_API clmha_status clmha_context_create_from_cl(cl_context cl_ctx, cl_device_id device,
                                                    cl_command_queue queue,
                                                    const clmha_context_options *options,
                                                    clmha_context **ctx);

/** Waits for all work and frees the context. Tensors and layers must be released first. */
CLMHA_API void clmha_context_release(clmha_context *ctx);

/** Blocks until every command clmha enqueued on the context's queue has finished. */
CLMHA_API clmha_status clmha_context_finish(clmha_context *ctx);

/** The last error message of a call on this context ("" if none). */
CLMHA_API const char *clmha_context_last_error(const clmha_context *ctx);

/** The raw OpenCL error code of the last failed OpenCL call on this context (0 if none). */
CLMHA_API cl_int clmha_context_last_cl_error(const clmha_context *ctx);

/** The raw CLBlast status of the last failed CLBlast call on this context (0 if none). */
CLMHA_API int clmha_context_last_clblast_error(const clmha_context *ctx);

/** The full log of the last failed program build, headed by the program name and the build
 *  options used ("" if no build failed). */
CLMHA_API const char *clmha_context_build_log(const clmha_context *ctx);

/** The device the context runs on. */
CLMHA_API clmha_status clmha_context_device(const clmha_context *ctx, clmha_device_info *info);

/** The row of the tuning table the context uses: its device's (clmha_device_tuning_name), or
 *  the one the settings' row named. A static string; NULL for a NULL @p ctx. */
CLMHA_API const char *clmha_context_tuning_name(const clmha_context *ctx);

/**
 * Describes the settings in force and where each came from, as "row=cpu (the device's row),
 * split_chunk=2 (options.tune), tail=0 (CLMHA_TUNE)": the tuning row, then every setting that
 * overrides it (the others are the row's). Writes at most @p len bytes, NUL included, into
 * @p buf (may be NULL when @p len is 0) and returns the length of the whole text, as snprintf
 * does (0 for a NULL @p ctx).
 */
CLMHA_API size_t clmha_context_settings(const clmha_context *ctx, char *buf, size_t len);

/**
 * Stores @p settings ("key=value,...", checked as options.tune is) as the tuned settings of the
 * context's device: a file in the context's cache folder, named for the platform, device,
 * driver version and clmha version, that every later context on that device loads (unless
 * options.use_tuned is false) under CLMHA_TUNE, options.tune and options.settings. A file made
 * for another driver or clmha version is never loaded; a corrupt one is ignored with a warning.
 * @p note: one line of free text kept in the file (what was measured), or NULL. The file's path
 * goes to @p path (may be NULL) as snprintf writes. CLMHA_ERR_INVALID_ARGUMENT for invalid
 * settings or a context whose cache is off; CLMHA_ERR_IO when the file cannot be written.
 * clmha-tune measures and stores them (docs/devices.md, "Tuning on your device").
 */
CLMHA_API clmha_status clmha_context_save_tuned(clmha_context *ctx, const char *settings,
                                                const char *note, char *path, size_t path_len);

/** The path of the tuned-settings file of the context's device (whether or not it exists), or
 *  NULL when the cache is off or @p ctx is NULL. */
CLMHA_API const char *clmha_context_tuned_path(const clmha_context *ctx);

/** The program-binary cache folder in use, or NULL when the cache is off. */
CLMHA_API const char *clmha_context_cache_dir(const clmha_context *ctx);

/** The context's OpenCL objects (borrowed; do not release). */
CLMHA_API cl_context clmha_context_cl_context(const clmha_context *ctx);
CLMHA_API cl_command_queue clmha_context_queue(const clmha_context *ctx);

/** Counters of program builds, for diagnostics and tests. */
typedef struct clmha_context_stats {
    uint64_t programs_built_from_source; /**< clBuildProgram from source. */
    uint64_t programs_loaded_from_cache; /**< Built from a cached binary. */
    uint64_t cache_files_written;        /**< Binaries written to the cache folder. */
    uint64_t cache_files_rejected;       /**< Corrupt, truncated or stale files replaced. */
    /** Layer workspace buffers allocated or grown, the packed copy of a layer's query, key and
     *  value kernels (the qkv_fuse setting) included. */
    uint64_t workspace_allocations;
    /** CLBlast's GEMM program built by clmha_layer_reserve (0 or 1 per context). */
    uint64_t clblast_builds_reserved;
    /** CLBlast's GEMM program built inside a call (its first projection through CLBlast on a
     *  context where no reserve had it built first; 0 or 1). */
    uint64_t clblast_builds_in_calls;
} clmha_context_stats;

/** Copies the context's counters to @p stats. */
CLMHA_API clmha_status clmha_context_get_stats(const clmha_context *ctx,
                                               clmha_context_stats *stats);

/** Device time of the kernels launched on a profiling context, by what they do. */
typedef struct clmha_profile {
    /** Dense projections (CLBlast or clmha's GEMM, bias fills), and a call's last launch where
     *  that is gemm_tail (decode steps: the merge of split attention's chunks, the output
     *  projection and the cache splice in one kernel). */
    double projection_s;
    double attention_s; /**< Masked attention, and its layout gathers for rank > 3. */
    double other_s;     /**< The final commit (outputs, cache splice), regularizers. */
    uint64_t launches;  /**< Kernels counted. */
} clmha_profile;

/** On a context made with options.profile: waits for all queued work, returns the device
 *  time of every kernel launched since the last call (or since creation) and starts a new
 *  count. CLMHA_ERR_INVALID_ARGUMENT on a context without profiling. */
CLMHA_API clmha_status clmha_context_take_profile(clmha_context *ctx, clmha_profile *profile);

/** Builds (or loads from the binary cache) every embedded kernel program with its default
 *  specialisation, so that later layer creation finds them ready. Optional. */
CLMHA_API clmha_status clmha_context_warm_up(clmha_context *ctx);

/* ------------------------------------------------------------------------------------------
 * Tensors
 * ---------------------------------------------------------------------------------------- */

#define CLMHA_MAX_RANK 8

typedef enum clmha_dtype {
    CLMHA_FLOAT32 = 0, /**< 4-byte IEEE float: inputs, outputs, caches. */
    CLMHA_UINT8 = 1,   /**< 1-byte unsigned: masks (nonzero = attend). */
    /** 2-byte IEEE half (binary16), host data as uint16_t bit patterns: the half key/value
     *  cache of a layer created with cache_dtype CLMHA_FLOAT16. */
    CLMHA_FLOAT16 = 2,
    CLMHA_INT32 = 3, /**< 4-byte signed integer: per-sequence key lengths (args.key_lengths). */
    /** 1-byte signed integer: the int8 key/value cache of a layer created with cache_dtype
     *  CLMHA_INT8, rows of int8 values each followed by its float scale's 4 bytes (see
     *  clmha_layer_create_cache). */
    CLMHA_INT8 = 4
} clmha_dtype;

/** A dense row-major device tensor: a shape, a dtype and a region of a cl_mem. Opaque. */
typedef struct clmha_tensor clmha_tensor;

/** Allocates a device tensor of @p rank (1..CLMHA_MAX_RANK) dims, every dim >= 1. Its
 *  contents are undefined until written. */
CLMHA_API clmha_status clmha_tensor_create(clmha_context *ctx, clmha_dtype dtype, int rank,
                                           const size_t *shape, clmha_tensor **tensor);

/** Wraps @p buffer (retained) as a tensor starting @p offset_bytes into it. The region must
 *  fit in the buffer and the offset be a multiple of the element size. */
CLMHA_API clmha_status clmha_tensor_wrap(clmha_context *ctx, clmha_dtype dtype, int rank,
                                         const size_t *shape, cl_mem buffer, size_t offset_bytes,
                                         clmha_tensor **tensor);

/** Frees the tensor (and its buffer, or its reference to a wrapped one). NULL is a no-op. */
CLMHA_API void clmha_tensor_release(clmha_tensor *tensor);

/** Copies @p bytes (must equal the tensor's size in bytes) from host memory; blocking. */
CLMHA_API clmha_status clmha_tensor_write(clmha_tensor *tensor, const void *host, size_t bytes);

/** Copies the tensor (@p bytes must equal its size in bytes) to host memory; blocking, so it
 *  also waits for earlier work on the queue. */
CLMHA_API clmha_status clmha_tensor_read(const clmha_tensor *tensor, void *host, size_t bytes);

/** Enqueues zero-filling the whole tensor (asynchronous, like a layer call). */
CLMHA_API clmha_status clmha_tensor_zero(clmha_tensor *tensor);

CLMHA_API int clmha_tensor_rank(const clmha_tensor *tensor);
/** Dimension @p axis (negative counts from the end); 0 for a bad axis or NULL. */
CLMHA_API size_t clmha_tensor_dim(const clmha_tensor *tensor, int axis);
/** Number of elements; 0 for NULL. */
CLMHA_API size_t clmha_tensor_numel(const clmha_tensor *tensor);
CLMHA_API clmha_dtype clmha_tensor_dtype(const clmha_tensor *tensor);
/** The underlying buffer (borrowed) and the tensor's byte offset in it. */
CLMHA_API cl_mem clmha_tensor_buffer(const clmha_tensor *tensor);
CLMHA_API size_t clmha_tensor_offset(const clmha_tensor *tensor);

/* ------------------------------------------------------------------------------------------
 * Layer configuration (the Keras constructor)
 * ---------------------------------------------------------------------------------------- */

typedef enum clmha_init_kind {
    CLMHA_INIT_GLOROT_UNIFORM = 0, /**< U(-l, l), l = sqrt(6 / (fan_in + fan_out)). */
    CLMHA_INIT_GLOROT_NORMAL,      /**< Truncated N(0, s), s = sqrt(2/(fan_in+fan_out))/.8796. */
    CLMHA_INIT_HE_UNIFORM,         /**< U(-l, l), l = sqrt(6 / fan_in). */
    CLMHA_INIT_HE_NORMAL,          /**< Truncated N(0, s), s = sqrt(2 / fan_in) / .8796. */
    CLMHA_INIT_LECUN_UNIFORM,      /**< U(-l, l), l = sqrt(3 / fan_in). */
    CLMHA_INIT_LECUN_NORMAL,       /**< Truncated N(0, s), s = sqrt(1 / fan_in) / .8796. */
    CLMHA_INIT_RANDOM_UNIFORM,     /**< U(minval, maxval); Keras default [-0.05, 0.05]. */
    CLMHA_INIT_RANDOM_NORMAL,      /**< N(mean, stddev); Keras default (0, 0.05). */
    CLMHA_INIT_TRUNCATED_NORMAL,   /**< N(mean, stddev) redrawn beyond 2 stddev. */
    CLMHA_INIT_ZEROS,
    CLMHA_INIT_ONES,
    CLMHA_INIT_CONSTANT /**< Every value = value (Keras default 0). */
} clmha_init_kind;

/** An initializer and its parameters (only those of its kind are read). */
typedef struct clmha_initializer {
    clmha_init_kind kind;
    double minval, maxval; /**< random_uniform. */
    double mean, stddev;   /**< random_normal, truncated_normal. */
    double value;          /**< constant. */
} clmha_initializer;

/** An initializer of @p kind with Keras's default parameters. */
CLMHA_API clmha_initializer clmha_initializer_default(clmha_init_kind kind);

typedef enum clmha_regularizer_kind {
    CLMHA_REGULARIZER_NONE = 0,
    CLMHA_REGULARIZER_L1,  /**< l1 * sum|w|; Keras default l1 = 0.01. */
    CLMHA_REGULARIZER_L2,  /**< l2 * sum w^2; Keras default l2 = 0.01. */
    CLMHA_REGULARIZER_L1L2 /**< Both; Keras defaults l1 = l2 = 0. */
} clmha_regularizer_kind;

/** A regularizer. It adds to a training loss and never changes the forward pass. */
typedef struct clmha_regularizer {
    clmha_regularizer_kind kind;
    double l1, l2;
} clmha_regularizer;

typedef enum clmha_constraint_kind {
    CLMHA_CONSTRAINT_NONE = 0,
    CLMHA_CONSTRAINT_MAX_NORM,     /**< Keras default max_value 2, axis 0. */
    CLMHA_CONSTRAINT_MIN_MAX_NORM, /**< Keras defaults 0, 1, rate 1, axis 0. */
    CLMHA_CONSTRAINT_NON_NEG,
    CLMHA_CONSTRAINT_UNIT_NORM /**< Keras default axis 0. */
} clmha_constraint_kind;

/** A weight constraint. Keras applies it after an optimizer step, never in the forward pass. */
typedef struct clmha_constraint {
    clmha_constraint_kind kind;
    double max_value, min_value, rate;
    int axis;
} clmha_constraint;

/** A regularizer of @p kind with Keras's default factors (L1: l1 0.01; L2: l2 0.01; L1L2: 0, 0). */
CLMHA_API clmha_regularizer clmha_regularizer_default(clmha_regularizer_kind kind);

/** A constraint of @p kind with Keras's defaults (max_norm: 2, axis 0; min_max_norm: 0, 1,
 *  rate 1, axis 0; unit_norm: axis 0). */
CLMHA_API clmha_constraint clmha_constraint_default(clmha_constraint_kind kind);

/** Marks clmha_layer_config.seed as Keras's seed=None: a seed is drawn from the clock. */
#define CLMHA_SEED_NONE (-1)

/**
 * What a query row that attends to no key (every key masked, by the mask, key_lengths or the
 * causal rule) gives. Keras has two paths, and they differ there: its fused one
 * (ops.dot_product_attention, taken when the layer's dropout is 0, no scores are returned and
 * the inputs have rank 3) weighs all S keys alike, so the row is the mean of the S value rows;
 * its explicit one (dropout > 0, scores returned, or inputs of rank > 3) gives probabilities of
 * 0 and an attention output of 0 (the layer's output is then its output bias).
 */
typedef enum clmha_fully_masked_rows {
    CLMHA_FULLY_MASKED_KERAS = 0, /**< As Keras: the mean on its fused path, zeros otherwise. */
    CLMHA_FULLY_MASKED_ZEROS = 1  /**< Zeros on every path (a call's output then never depends
                                   *   on whether the scores are asked for). */
} clmha_fully_masked_rows;

/**
 * Keras's dtype policy of the layer (its dtype= argument): the dtype of its variables and of its
 * computation. The 16-bit policies keep a 16-bit copy of each kernel and bias on the device,
 * which the projections read (half the bytes of float32), and compute as Keras does in that
 * dtype: each projection's inputs, weights and result rounded to it (round to nearest even),
 * sums in float32 (as XLA computes Keras's 16-bit products on a CPU); the softmax and the
 * attention's sums stay float32. Outputs are float32 tensors holding the 16-bit values. bfloat16
 * is carried as 16-bit integers and widened in the kernels (OpenCL 1.2 has no bfloat16).
 */
typedef enum clmha_dtype_policy {
    CLMHA_POLICY_FLOAT32 = 0,   /**< "float32": variables and computation float32 (default). */
    CLMHA_POLICY_FLOAT16,       /**< "float16": float16 variables (values set are rounded to
                                 *   float16) and computation. */
    CLMHA_POLICY_BFLOAT16,      /**< "bfloat16": bfloat16 variables and computation. */
    CLMHA_POLICY_MIXED_FLOAT16, /**< "mixed_float16": float32 variables, float16 computation. */
    CLMHA_POLICY_MIXED_BFLOAT16 /**< "mixed_bfloat16": float32 variables, bfloat16 computation. */
} clmha_dtype_policy;

/** Keras's name of a dtype policy ("float32", "mixed_float16", ...); NULL for a bad value. */
CLMHA_API const char *clmha_dtype_policy_name(clmha_dtype_policy policy);

/**
 * The arguments of keras_hub.layers.CachedMultiHeadAttention(...). Initialise with
 * clmha_layer_config_init(), which gives Keras's defaults, then set what differs.
 */
typedef struct clmha_layer_config {
    int num_heads;  /**< H >= 1 (no default in Keras; init sets 1). */
    int key_dim;    /**< dk >= 1 (no default in Keras; init sets 1). */
    int value_dim;  /**< dv >= 1, or 0 for Keras's None (= key_dim). */
    double dropout; /**< Rate in [0, 1), applied to the probabilities in training mode. */
    bool use_bias;  /**< Default true. */
    /** Output feature shape; output_rank 0 is Keras's None (the query's last dim). */
    int output_rank;
    size_t output_shape[CLMHA_MAX_RANK];
    /** Axes attended over; num_attention_axes 0 is Keras's None. */
    int num_attention_axes;
    int attention_axes[CLMHA_MAX_RANK];
    clmha_initializer kernel_initializer; /**< Default glorot_uniform. */
    clmha_initializer bias_initializer;   /**< Default zeros. */
    clmha_regularizer kernel_regularizer, bias_regularizer, activity_regularizer;
    clmha_constraint kernel_constraint, bias_constraint;
    int64_t seed; /**< >= 0, or CLMHA_SEED_NONE (default). */
    /** The dtype of the key/value cache the layer's calls take: CLMHA_FLOAT32 (default),
     *  CLMHA_FLOAT16, which halves the cache's memory and the bytes a decode step reads, or
     *  CLMHA_INT8, int8 rows with a float scale each (about a quarter; see
     *  clmha_layer_create_cache). With a narrow cache the new keys and values are rounded to half
     *  (round to nearest even) or quantized to int8 rows before the call attends over them, so a
     *  call sees exactly what the cache keeps; all arithmetic stays float32. Calls without a
     *  cache are unaffected. Not a Keras argument: Keras keeps the cache in the layer's compute
     *  dtype. */
    clmha_dtype cache_dtype;
    /** A fully masked query row's result: CLMHA_FULLY_MASKED_KERAS (default) or
     *  CLMHA_FULLY_MASKED_ZEROS; see clmha_fully_masked_rows. */
    clmha_fully_masked_rows fully_masked_rows;
    /** Keras's dtype= (default CLMHA_POLICY_FLOAT32); see clmha_dtype_policy. A 16-bit policy
     *  cannot be combined with clmha_layer_quantize (Keras quantizes float32 layers here). */
    clmha_dtype_policy dtype_policy;
} clmha_layer_config;

/** Fills @p config with Keras's defaults (num_heads and key_dim set to 1: set them). */
CLMHA_API void clmha_layer_config_init(clmha_layer_config *config);

/* ------------------------------------------------------------------------------------------
 * Layer
 * ---------------------------------------------------------------------------------------- */

/** A built CachedMultiHeadAttention layer: weights on the device, compiled kernels and a
 *  reusable workspace. Opaque. */
typedef struct clmha_layer clmha_layer;

/**
 * Creates and builds a layer for inputs whose last dims are @p query_dim (Dq), @p value_dim
 * (Dv) and @p key_dim (Dk; 0 means Dv, as Keras's key defaults to value): Keras's
 * build(query_shape, value_shape, key_shape). Allocates the weights, initialises them from the
 * configured initializers and seed (Philox4x32-10, so a seed gives the same weights on any
 * device), and compiles the kernels the layer needs. Invalid config values are rejected here.
 */
CLMHA_API clmha_status clmha_layer_create(clmha_context *ctx, const clmha_layer_config *config,
                                          size_t query_dim, size_t value_dim, size_t key_dim,
                                          clmha_layer **layer);

/** Frees the layer (waits for its queued work first). NULL is a no-op. */
CLMHA_API void clmha_layer_release(clmha_layer *layer);

/** The layer's weights, in Keras's order. Biases exist only with use_bias. */
typedef enum clmha_weight {
    CLMHA_WEIGHT_QUERY_KERNEL = 0, /**< (Dq, H, dk) */
    CLMHA_WEIGHT_QUERY_BIAS,       /**< (H, dk) */
    CLMHA_WEIGHT_KEY_KERNEL,       /**< (Dk, H, dk) */
    CLMHA_WEIGHT_KEY_BIAS,         /**< (H, dk) */
    CLMHA_WEIGHT_VALUE_KERNEL,     /**< (Dv, H, dv) */
    CLMHA_WEIGHT_VALUE_BIAS,       /**< (H, dv) */
    CLMHA_WEIGHT_OUTPUT_KERNEL,    /**< (H, dv, *output_shape) */
    CLMHA_WEIGHT_OUTPUT_BIAS,      /**< (*output_shape) */
    CLMHA_WEIGHT_COUNT
} clmha_weight;

/** The Keras name of a weight, e.g. "query_dense/kernel"; NULL for a bad value. */
CLMHA_API const char *clmha_weight_name(clmha_weight weight);

/** The shape of a weight in Keras's layout. A bias of a layer without use_bias is
 *  CLMHA_ERR_INVALID_ARGUMENT. */
CLMHA_API clmha_status clmha_layer_weight_shape(const clmha_layer *layer, clmha_weight weight,
                                                int *rank, size_t shape[CLMHA_MAX_RANK]);

/** Uploads a weight from host memory in Keras's layout; @p count must equal its element
 *  count. Blocking. */
CLMHA_API clmha_status clmha_layer_set_weight(clmha_layer *layer, clmha_weight weight,
                                              const float *data, size_t count);

/** Downloads a weight to host memory in Keras's layout; @p count must equal its element count.
 *  Blocking. */
CLMHA_API clmha_status clmha_layer_get_weight(const clmha_layer *layer, clmha_weight weight,
                                              float *data, size_t count);

/**
 * Quantizes the layer's four kernels as Keras's quantize(@p mode) does to the layer's
 * EinsumDense sub-layers (Model.quantize), with the same float32 arithmetic, so a layer
 * quantized here holds the very integers and scales Keras's would:
 * - "int8": int8 kernels with one scale a column (abs-max); each call then quantizes every
 *   input row of each projection to int8 by its absolute maximum, multiplies in integers and
 *   rescales, as Keras's int8 call does.
 * - "int4": weight-only 4-bit kernels in groups of 128 input rows with a scale and a zero point
 *   each (Keras's default, policy "int4/128"); "int4/N" takes groups of N rows (N a positive
 *   multiple of 4) and "int4/-1" one scale a column (Keras's per-channel int4).
 * Biases stay float32. The kernels' float values are gone afterwards: clmha_layer_get_weight
 * then returns a kernel's integers (as Keras's layer.kernel does), clmha_layer_set_weight
 * refuses kernels, and kernel regularizers and constraints no longer apply to them (Keras's
 * quantized kernel variables carry none). A layer is quantized once. On failure the layer is
 * unchanged. Blocking.
 */
CLMHA_API clmha_status clmha_layer_quantize(clmha_layer *layer, const char *mode);

/** The layer's quantization as Keras names its dtype policy's mode: "" (float kernels), "int8",
 *  "int4/128" (a block size) or "int4/-1". Valid until the next call on this thread. */
CLMHA_API const char *clmha_layer_quantization(const clmha_layer *layer);

/** Creates a zero-filled key/value cache (batch, 2, max_length, num_heads, key_dim) for this
 *  layer, of the layer's cache_dtype (float32 or float16). Needs key_dim == value_dim. Positions
 *  not yet written hold zeros, never garbage.
 *
 *  With cache_dtype CLMHA_INT8 the cache is (batch, 2, max_length, num_heads, key_dim + 4) of
 *  CLMHA_INT8, clmha's own format: each (position, head) row of keys or values is key_dim int8
 *  values q followed by the 4 bytes of its float scale s (device byte order), the values being
 *  q * s. A call quantizes each new row as s = amax / 127 (amax its largest magnitude; 0 for a
 *  row of zeros, NaN for a row holding NaN or an infinity) and q = rint(x / s). A cache an
 *  application wraps must start at a multiple of 4 bytes. */
CLMHA_API clmha_status clmha_layer_create_cache(clmha_layer *layer, size_t batch, size_t max_length,
                                                clmha_tensor **cache);

/**
 * The layer's regularization losses, as Keras's layer.losses adds them up. @p weights_loss
 * (may be NULL): kernel_regularizer over the four kernels plus bias_regularizer over the four
 * biases, at the weights' current values. @p activity_loss (may be NULL): activity_regularizer
 * over the outputs of the dense projections run by the last call (query, key and value
 * projections, when computed, and the output projection), each divided by its batch size as
 * Keras does; 0 before the first call. Blocking (waits for the queued work).
 */
CLMHA_API clmha_status clmha_layer_regularization_loss(clmha_layer *layer, double *weights_loss,
                                                       double *activity_loss);

/**
 * Applies kernel_constraint to the four kernels and bias_constraint to the biases, in place
 * on the device, as Keras does after each optimizer step. A constraint's axis (negative counts
 * from the end) must exist in every weight it applies to; this is checked before anything
 * changes. Enqueued (asynchronous).
 */
CLMHA_API clmha_status clmha_layer_apply_constraints(clmha_layer *layer);

/**
 * Allocates the layer's workspace for calls with rank-3 inputs of up to @p max_batch
 * sequences, @p max_query_len query positions, @p max_kv_len projected key/value positions
 * (S* with a cache, S without) and caches of up to @p max_cache_len positions (0 without a
 * cache), with room for the attention probabilities when @p with_scores. Later calls within
 * those sizes allocate nothing; without it the workspace grows, once, on the first call that
 * needs more (an allocation inside that call). Where those sizes mean projections through
 * CLBlast, CLBlast builds its GEMM program here, and a layer that projects self-attention as
 * one CLBlast product (the qkv_fuse setting, docs/devices.md) allocates its packed copy of the
 * query, key and value kernels here too.
 */
CLMHA_API clmha_status clmha_layer_reserve(clmha_layer *layer, size_t max_batch,
                                           size_t max_query_len, size_t max_kv_len,
                                           size_t max_cache_len, bool with_scores);

/** The layer's output feature shape (output_shape, or (Dq,) by default). */
CLMHA_API clmha_status clmha_layer_output_shape(const clmha_layer *layer, int *rank,
                                                size_t shape[CLMHA_MAX_RANK]);

/**
 * The shape of the attention probabilities (clmha_call_args.attention_scores) for a call with
 * this @p query and, without a cache, @p key_or_value (the key, or the value when there is no
 * key); with a cache, @p cache instead. Rank-3 inputs give (B, num_heads, T, S); inputs of
 * rank > 3 give (B, *non-attention axes, num_heads, *query attention dims, *key attention
 * dims), as Keras returns them.
 */
CLMHA_API clmha_status clmha_layer_scores_shape(const clmha_layer *layer, const clmha_tensor *query,
                                                const clmha_tensor *key_or_value,
                                                const clmha_tensor *cache, int *rank,
                                                size_t shape[CLMHA_MAX_RANK]);

/**
 * The arguments of one call, Keras's layer(query, value, key, attention_mask, cache,
 * cache_update_index, training). Initialise with clmha_call_args_init().
 *
 * Shapes (float32 unless said), for rank-3 inputs:
 * - query   (B, T, Dq)                               required.
 * - value   (B, S*, Dv)   required, except in static-cache mode, where it is ignored.
 * - key     (B, S*, Dk)   optional (defaults to value); ignored in static-cache mode.
 * - attention_mask  uint8, nonzero = attend; rank 2 (T, S), rank 3 (B|1, T|1, S|1) or rank 4
 *           (B|1, H|1, T|1, S|1) as Keras takes them, broadcast to (B, H, T, S) over size-1
 *           dims and the missing batch and head dims.
 * - cache   (B, 2, S, H, dk), needs dk == dv. [:, 0] holds keys, [:, 1] values.
 * - output  (B, T, *output_shape)                    required.
 * - attention_scores  (B, H, T, S), optional: the attention probabilities (masked ones 0).
 *
 * Modes:
 * - no cache: S = S*, key/value projected and attended to. cache_update_index must be unset.
 * - static cache (cache set, has_cache_update_index false): attends to the cache as it is;
 *   the cache is not modified.
 * - updated cache (cache set, has_cache_update_index true, index i): key/value projected and
 *   written into cache[:, :, i:i+S*] IN PLACE (Keras returns a new cache instead; clmha
 *   updates the caller's), then attends to the whole cache. Needs 0 <= i and i + S* <= S.
 *
 * Inputs of rank > 3 (no cache): query (B, a1..an, Dq), value/key (B, b1..bn, Dv|Dk) with
 * equal dims on the axes not attended over; config.attention_axes (Keras's None: all of
 * 1..n; negative a means a + rank) names the attended axes, softmax runs jointly over them.
 * The mask broadcasts (numpy rules) to (B, *other axes, *query attention dims, *key attention
 * dims); output is (B, a1..an, *output_shape); see clmha_layer_scores_shape().
 */
typedef struct clmha_call_args {
    const clmha_tensor *query;
    const clmha_tensor *value;
    const clmha_tensor *key;
    const clmha_tensor *attention_mask;
    clmha_tensor *cache;
    bool has_cache_update_index;
    int64_t cache_update_index;
    bool training; /**< Training mode: dropout applies when the rate is > 0. */
    /** In-kernel causal mask, keras-hub's generation rule: key j is attended to only when
     *  j <= cache_update_index + t (updated cache) or j <= S - T + t (no cache, static cache).
     *  Combines with attention_mask (both must allow). Needs rank-3 inputs. Keys past the
     *  last allowed one are never read, so decoding into a long preallocated cache is cheap. */
    bool causal;
    /** Optional (B,) int32 tensor of per-sequence valid key lengths: key j of sequence b is
     *  attended to only when j < key_lengths[b] (values below 0 count as 0, above S as S).
     *  Combines with attention_mask and causal (all must allow); keys past the length are
     *  never read, so batched decoding of sequences of different lengths needs no mask tensor.
     *  Needs rank-3 inputs. Not a Keras argument (Keras expresses it with the mask). */
    const clmha_tensor *key_lengths;
    clmha_tensor *output;
    clmha_tensor *attention_scores;
} clmha_call_args;

/** Fills @p args with an empty call: everything NULL/false. */
CLMHA_API void clmha_call_args_init(clmha_call_args *args);

/**
 * Runs the layer. Every argument is validated before anything is enqueued, so a rejected
 * call leaves output, cache and every other buffer unchanged; and since the caller's tensors
 * are written only by the call's last kernel, a call that fails at any OpenCL step leaves them
 * unchanged too. After CL_OUT_OF_RESOURCES the context is broken: later calls return
 * CLMHA_ERR_CONTEXT_BROKEN. On success the work is
 * enqueued on the context's queue and may still be running: wait with clmha_context_finish()
 * or a blocking clmha_tensor_read(). No host synchronisation happens inside the call.
 * In training mode with dropout > 0, each probability is kept with probability 1 - dropout
 * (scaled by 1 / (1 - dropout)) by a Philox4x32-10 draw keyed by the layer seed and a
 * per-layer call counter; attention_scores are returned before dropout, as in Keras.
 */
CLMHA_API clmha_status clmha_layer_call(clmha_layer *layer, const clmha_call_args *args);

/* ------------------------------------------------------------------------------------------
 * Keras weight files (.weights.h5)
 * ---------------------------------------------------------------------------------------- */

/** One attention layer found in a Keras 3 .weights.h5 file, with what its kernels tell. */
typedef struct clmha_keras_layer_info {
    char path[256];     /**< The layer's group, e.g. "block/self_attention". */
    size_t query_dim;   /**< Dq: the query kernel's first dim. */
    size_t value_dim;   /**< Dv: the value kernel's first dim. */
    size_t key_dim;     /**< Dk: the key kernel's first dim. */
    int num_heads;      /**< H. */
    int head_key_dim;   /**< dk (Keras's key_dim). */
    int head_value_dim; /**< dv (Keras's value_dim). */
    bool use_bias;      /**< A sub-layer has a bias (vars/1); one without loads as zeros. */
    int output_rank;    /**< The output kernel's trailing dims: output_shape. */
    size_t output_shape[CLMHA_MAX_RANK];
    /** Keras's quantization mode of the layer's kernels: "" (float), "int8", "int4/<block>"
     *  (groups of input rows with zero points) or "int4/-1" (one scale a column); see
     *  clmha_layer_quantize(). An int4 layer's packed kernels do not record their heads: they
     *  come from the biases, and are 0 for an int4 layer without biases. */
    char quantization[32];
} clmha_keras_layer_info;

/**
 * Lists every attention layer of a Keras 3 weights file: every group, at any depth, holding
 * query_dense, key_dense, value_dense and output_dense, each with a vars/0 kernel (and
 * optionally a vars/1 bias) of consistent shapes, in Keras's order (the order save_weights wrote
 * them: the model's layers in order, each layer's attributes by name). The file is treated as
 * untrusted: anything malformed is an error or is skipped, never a crash; a group that looks
 * like a layer but cannot be loaded (a quantized one, say) is not listed, and
 * clmha_keras_find_layer says why when it is asked for. Free *layers with free().
 */
CLMHA_API clmha_status clmha_keras_list_layers(const char *path, clmha_keras_layer_info **layers,
                                               size_t *count);

/**
 * Finds one attention layer of a weights file by @p name: its full group path (a leading '/'
 * is optional) or its last path component; NULL picks the only layer. No match, or several,
 * is CLMHA_ERR_INVALID_ARGUMENT with a message listing the layers in the file.
 */
CLMHA_API clmha_status clmha_keras_find_layer(const char *path, const char *name,
                                              clmha_keras_layer_info *info);

/**
 * Creates a layer from a weights file: num_heads, key_dim, value_dim, use_bias, output_shape and
 * the input dims come from the file (layer @p name, as in clmha_keras_find_layer); dropout,
 * attention_axes, seed and the other Keras arguments from @p base (NULL: Keras's defaults).
 * The weights are loaded as by clmha_layer_load_keras_weights(); the configured initializers
 * are not run, since the file's weights replace them.
 */
CLMHA_API clmha_status clmha_layer_create_from_keras(clmha_context *ctx, const char *path,
                                                     const char *name,
                                                     const clmha_layer_config *base,
                                                     clmha_layer **layer);

/**
 * Loads a built layer's weights from layer @p name of a Keras weights file. Every kernel and
 * bias must have exactly the layer's shapes (and be present exactly when it has use_bias);
 * float16, float32 and float64 data are converted to float32. Everything is read and checked
 * before anything is uploaded, so on failure the layer's weights are unchanged. Uses libhdf5,
 * whose automatic error printing is switched off during the call (not thread-safe with other
 * HDF5 use in the process).
 */
CLMHA_API clmha_status clmha_layer_load_keras_weights(clmha_layer *layer, const char *path,
                                                      const char *name);

#ifdef __cplusplus
}
#endif

#endif /* CLMHA_H */
