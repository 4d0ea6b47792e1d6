# Warnings everywhere; -Werror in CI (ROTOR_WERROR).
add_compile_options(-Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
                    -Wpointer-arith -Wvla -Wformat=2)
if(ROTOR_WERROR)
  add_compile_options(-Werror)
endif()

# The baseline: x86-64 with SSE2 unless ROTOR_NATIVE. The SIMD kernels get
# their own flags per translation unit (simd/CMakeLists.txt) and are chosen at
# run time, so a portable build still runs AVX-512 where the CPU has it.
if(ROTOR_NATIVE)
  add_compile_options(-march=native)
endif()

if(ROTOR_SANITIZE AND ROTOR_TSAN)
  message(FATAL_ERROR "ROTOR_SANITIZE and ROTOR_TSAN cannot be combined")
endif()
if(ROTOR_SANITIZE)
  # GCC leaves float-to-int conversion out of "undefined" (clang does not):
  # asked for by name, a NaN or out-of-range cast fails under both.
  add_compile_options(-fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all
                      -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined,float-cast-overflow)
  add_compile_definitions(ROTOR_SANITIZED=1)
endif()
if(ROTOR_TSAN)
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
  add_compile_definitions(ROTOR_SANITIZED=1)
endif()
