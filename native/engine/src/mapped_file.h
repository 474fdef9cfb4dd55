// A whole file mapped read-only (POSIX mmap). The mapping is never written: pages are PROT_READ.
#pragma once
#include <cstddef>
#include <string>

namespace lmi::engine {

class MappedFile {
 public:
  // Throws Error: INVALID_ARGUMENT when the file cannot be opened, NATIVE when it cannot be mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const void* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace lmi::engine
