// Host emulation of the CUDA kernel dialect used by ../../kernels/*.cu, so the kernels'
// logic can be compiled with g++ and checked against the NumPy references on machines
// without a GPU.
//
// Execution model: a launch starts blockDim.x OS threads (std::thread), one per CUDA
// thread of a block. Every thread walks the whole grid block by block, meeting the others
// at a barrier between blocks, so
//   * __syncthreads() is a real barrier (std::barrier) among the threads of a block,
//   * __shared__ variables (function-local statics here) are shared by the threads of the
//     running block and reused by the next one, as on the GPU,
//   * atomics are real atomics (std::atomic_ref), so races between threads are races,
//     and threads leave every barrier in a shuffled order (shim::jitter) to expose them.
// Blocks run one at a time and in REVERSE order, which catches kernels that silently
// assume block 0 runs first. What the emulation cannot check: warp-synchronous code
// (the kernels use none), memory-model subtleties of the GPU, performance.
#pragma once

#include <atomic>
#include <barrier>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
};

// Built-in variables: per-thread for the indices, per-launch for the dimensions.
inline thread_local dim3 threadIdx;
inline thread_local dim3 blockIdx;
inline dim3 blockDim;
inline dim3 gridDim;

namespace shim {
inline std::barrier<>* block_barrier = nullptr;
}  // namespace shim

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __restrict__ __restrict
// A __shared__ declaration inside a kernel becomes a function-local static: one copy
// shared by all threads of the (single) running block.
#define __shared__ static
#define __constant__ static const

namespace shim {
// Schedule fuzzing: after a barrier each thread yields a pseudo-random number of times,
// so threads leave it in varying orders and a missing __syncthreads() shows up as a
// wrong result instead of passing by luck of the OS scheduler.
inline void jitter() {
    thread_local unsigned state = 0x9E3779B9u ^ (threadIdx.x * 2654435761u);
    state = state * 1664525u + 1013904223u;
    for (unsigned n = (state >> 28) & 7; n > 0; --n) std::this_thread::yield();
}
}  // namespace shim

inline void __syncthreads() {
    shim::block_barrier->arrive_and_wait();
    shim::jitter();
}

template <typename T>
inline T atomicXor(T* address, T value) {
    return std::atomic_ref<T>(*address).fetch_xor(value);
}
template <typename T>
inline T atomicAnd(T* address, T value) {
    return std::atomic_ref<T>(*address).fetch_and(value);
}
template <typename T>
inline T atomicOr(T* address, T value) {
    return std::atomic_ref<T>(*address).fetch_or(value);
}
template <typename T>
inline T atomicAdd(T* address, T value) {
    return std::atomic_ref<T>(*address).fetch_add(value);
}
template <typename T>
inline T atomicMin(T* address, T value) {
    return std::atomic_ref<T>(*address).fetch_min(value);
}
template <typename T>
inline T __ldg(const T* address) {
    return *address;
}

namespace shim {

// Run `body` (one kernel invocation with its arguments bound) over a grid of
// grid_x * grid_y blocks of block_x threads.
template <typename Body>
int launch(unsigned grid_x, unsigned grid_y, unsigned block_x, Body body) {
    if (grid_x == 0 || grid_y == 0 || block_x == 0 || block_x > 1024) return 1;
    gridDim = dim3{grid_x, grid_y, 1};
    blockDim = dim3{block_x, 1, 1};
    std::barrier<> barrier(block_x);
    block_barrier = &barrier;
    std::vector<std::thread> threads;
    threads.reserve(block_x);
    for (unsigned t = 0; t < block_x; ++t) {
        threads.emplace_back([&, t] {
            threadIdx = dim3{t, 0, 0};
            for (unsigned by = grid_y; by-- > 0;) {
                for (unsigned bx = grid_x; bx-- > 0;) {
                    blockIdx = dim3{bx, by, 0};
                    body();
                    barrier.arrive_and_wait();  // the block ends for all its threads
                    shim::jitter();
                }
            }
        });
    }
    for (auto& thread : threads) thread.join();
    block_barrier = nullptr;
    return 0;
}

}  // namespace shim

// Export a C entry point `shim_<kernel>(grid_x, grid_y, block_x, params...)` for ctypes.
#define SHIM_UNPAREN(...) __VA_ARGS__
#define SHIM_EXPORT(kernel, params, args)                                                \
    extern "C" int shim_##kernel(unsigned grid_x, unsigned grid_y, unsigned block_x,   \
                                 SHIM_UNPAREN params) {                                \
        return shim::launch(grid_x, grid_y, block_x, [&] { kernel args; });            \
    }
