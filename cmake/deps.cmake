# Every dependency is a Debian package installed by scripts/install-deps.sh.
set(THREADS_PREFER_PTHREAD_FLAG ON)
find_package(Threads REQUIRED)
find_package(ZLIB REQUIRED)
find_package(PkgConfig REQUIRED)
# jemalloc backs the CLI and the benchmarks only; the library never replaces
# its host's malloc.
# liburing reads full vectors for reranking; xxHash checksums index sections.
pkg_check_modules(URING REQUIRED IMPORTED_TARGET liburing)
pkg_check_modules(XXHASH REQUIRED IMPORTED_TARGET libxxhash)
pkg_check_modules(JEMALLOC IMPORTED_TARGET jemalloc)
if(ROTOR_BUILD_TESTS)
  pkg_check_modules(CMOCKA REQUIRED IMPORTED_TARGET cmocka)
endif()
