#include "mapped_file.h"

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "lmi/engine.h"

#if defined(_WIN32)

namespace lmi::engine {
MappedFile::MappedFile(const std::string& path) {
  throw Error(ErrorCode::Unsupported, "cannot map '" + path + "': memory-mapped models need a POSIX system");
}
MappedFile::~MappedFile() = default;
void MappedFile::release(const void*, size_t) const {}
}  // namespace lmi::engine

#else

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace lmi::engine {

MappedFile::MappedFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    throw Error(ErrorCode::InvalidArgument, "cannot open model file '" + path + "': " + std::strerror(e));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw Error(ErrorCode::Native, "cannot stat model file '" + path + "': " + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(ErrorCode::InvalidArgument, "model path '" + path + "' is not a regular file");
  }
  if (st.st_size <= 0) {
    ::close(fd);
    throw Error(ErrorCode::GgufFormat, "model file '" + path + "' is empty");
  }
  size_ = static_cast<size_t>(st.st_size);
  void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  const int e = errno;
  ::close(fd);  // the mapping keeps its own reference to the file
  if (p == MAP_FAILED) {
    throw Error(ErrorCode::Native, "cannot mmap model file '" + path + "' (" + std::to_string(size_) +
                                       " bytes): " + std::strerror(e));
  }
  data_ = p;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(data_, size_);
}

void MappedFile::release(const void* begin, size_t bytes) const {
  const uintptr_t base = reinterpret_cast<uintptr_t>(data_);
  const uintptr_t lo = reinterpret_cast<uintptr_t>(begin);
  if (data_ == nullptr || lo < base || lo + bytes > base + size_) return;
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t first = (lo + page - 1) / page * page;  // pages wholly inside the range only:
  const uintptr_t last = (lo + bytes) / page * page;      // its neighbours may still be read
  if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

}  // namespace lmi::engine

#endif
