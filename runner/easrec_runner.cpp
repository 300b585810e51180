// easrec_runner: run an easrec-exported ExecuTorch program (.pte) from C++, without Python.
//
// Loads the program, feeds one history of item ids (int64 [B, L], left padded with 0, newest
// last; B rows all get the same history), runs N warm-up and M timed iterations, and prints the
// top-k items with their scores and every iteration's time on stdout in a line format that
// easrec parses (devices/native_runner.py: parse_runner_output). Runtime logs go to stderr.
//
// Written against ExecuTorch's runtime API (Program / Method / MethodMeta), the same API as
// ExecuTorch's examples/portable/executor_runner; see runner/README.md for building and flags.

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include <executorch/extension/data_loader/file_data_loader.h>
#include <executorch/extension/memory_allocator/malloc_memory_allocator.h>
#include <executorch/runtime/core/evalue.h>
#include <executorch/runtime/core/event_tracer.h>
#include <executorch/runtime/core/exec_aten/exec_aten.h>
#include <executorch/runtime/core/hierarchical_allocator.h>
#include <executorch/runtime/core/memory_allocator.h>
#include <executorch/runtime/executor/memory_manager.h>
#include <executorch/runtime/executor/method.h>
#include <executorch/runtime/executor/method_meta.h>
#include <executorch/runtime/executor/program.h>
#include <executorch/runtime/platform/runtime.h>

#if defined(EASREC_HAVE_ETDUMP)
#include <executorch/devtools/etdump/etdump_flatcc.h>
#endif

#if defined(ET_USE_THREADPOOL)
#if __has_include(<executorch/extension/threadpool/threadpool.h>)
#include <executorch/extension/threadpool/threadpool.h>
#else
// The wheel ships libexecutorch_threadpool.so but not threadpool.h: declare the two entry points
// the runner calls (same signatures as ExecuTorch's extension/threadpool/threadpool.h).
namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  bool _unsafe_reset_threadpool(uint32_t num_threads);
};
ThreadPool* get_threadpool();
} // namespace executorch::extension::threadpool
#endif
#endif

#ifndef EASREC_EXECUTORCH_VERSION
#define EASREC_EXECUTORCH_VERSION "unknown"
#endif

// The output format's version: bump it when a line changes, so parsers can refuse what they do not know.
static constexpr int kFormatVersion = 1;

using executorch::aten::ScalarType;
using executorch::aten::Tensor;
using executorch::aten::TensorImpl;
using executorch::extension::FileDataLoader;
using executorch::extension::MallocMemoryAllocator;
using executorch::runtime::Error;
using executorch::runtime::EValue;
using executorch::runtime::EventTracer;
using executorch::runtime::HierarchicalAllocator;
using executorch::runtime::MemoryManager;
using executorch::runtime::Method;
using executorch::runtime::MethodMeta;
using executorch::runtime::Program;
using executorch::runtime::Result;
using executorch::runtime::Span;
using executorch::runtime::Tag;

namespace {

struct Options {
  std::string model_path;
  std::string method;
  std::string ids;
  std::string ids_file;
  std::string inputs;
  std::string etdump_path;
  long warmup = 10;
  long iterations = 50;
  long threads = 1;
  long topk = -1; // -1: every item the graph returns
};

const char* kUsage =
    "usage: easrec_runner --model_path=FILE.pte (--ids=I1,I2,... | --ids_file=FILE | --inputs=FILE.bin)\n"
    "                     [--warmup=10] [--iterations=50] [--threads=1] [--topk=K]\n"
    "                     [--etdump_path=FILE.etdp] [--method=NAME]\n"
    "Item ids are the artifact's item indices (1..N, 0 = padding), oldest first, newest last;\n"
    "--ids_file holds them as text (separated by spaces, commas or newlines), --inputs as raw\n"
    "little-endian int64. Histories shorter than the program's window are left padded with 0,\n"
    "longer ones keep the newest ids.\n";

[[noreturn]] void fail(int code, const std::string& message) {
  std::fprintf(stderr, "easrec_runner: error: %s\n", message.c_str());
  std::exit(code);
}

const char* error_name(Error e) {
  switch (e) {
    case Error::Ok: return "Ok";
    case Error::Internal: return "Internal";
    case Error::InvalidState: return "InvalidState";
    case Error::EndOfMethod: return "EndOfMethod";
    case Error::NotSupported: return "NotSupported";
    case Error::NotImplemented: return "NotImplemented";
    case Error::InvalidArgument: return "InvalidArgument";
    case Error::InvalidType: return "InvalidType";
    case Error::OperatorMissing: return "OperatorMissing (a kernel library is not linked)";
    case Error::NotFound: return "NotFound";
    case Error::MemoryAllocationFailed: return "MemoryAllocationFailed";
    case Error::AccessFailed: return "AccessFailed";
    case Error::InvalidProgram: return "InvalidProgram (not a .pte, or from another ExecuTorch version)";
    case Error::DelegateInvalidCompatibility: return "DelegateInvalidCompatibility (is the delegate linked?)";
    case Error::DelegateMemoryAllocationFailed: return "DelegateMemoryAllocationFailed";
    case Error::DelegateInvalidHandle: return "DelegateInvalidHandle";
    default: return "error";
  }
}

std::string describe(Error e) {
  char buf[96];
  std::snprintf(buf, sizeof(buf), "%s (0x%" PRIx32 ")", error_name(e), static_cast<uint32_t>(e));
  return buf;
}

long parse_long(const std::string& flag, const std::string& text, long lo) {
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || errno != 0 || *end != '\0' || v < lo) {
    fail(2, "--" + flag + " must be an integer >= " + std::to_string(lo) + ", got '" + text + "'");
  }
  return v;
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (arg.rfind("--", 0) != 0) {
      fail(2, "unexpected argument '" + arg + "'\n" + kUsage);
    }
    std::string name = arg.substr(2), value;
    const size_t eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      fail(2, "--" + name + " needs a value");
    }
    if (name == "model_path") o.model_path = value;
    else if (name == "method") o.method = value;
    else if (name == "ids") o.ids = value;
    else if (name == "ids_file") o.ids_file = value;
    else if (name == "inputs") o.inputs = value;
    else if (name == "etdump_path") o.etdump_path = value;
    else if (name == "warmup") o.warmup = parse_long(name, value, 0);
    else if (name == "iterations") o.iterations = parse_long(name, value, 1);
    else if (name == "threads") o.threads = parse_long(name, value, 1);
    else if (name == "topk") o.topk = parse_long(name, value, 1);
    else fail(2, "unknown option --" + name + "\n" + kUsage);
  }
  if (o.model_path.empty()) fail(2, std::string("--model_path is required\n") + kUsage);
  const int sources = !o.ids.empty() + !o.ids_file.empty() + !o.inputs.empty();
  if (sources != 1) fail(2, std::string("give exactly one of --ids, --ids_file, --inputs\n") + kUsage);
  return o;
}

// Decimal ids separated by commas, spaces, tabs or newlines.
std::vector<int64_t> parse_id_text(const std::string& text, const std::string& where) {
  std::vector<int64_t> ids;
  std::string token;
  auto flush = [&]() {
    if (token.empty()) return;
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(token.c_str(), &end, 10);
    if (errno != 0 || *end != '\0' || v < 0) fail(2, where + ": '" + token + "' is not an item id (an integer >= 0)");
    ids.push_back(static_cast<int64_t>(v));
    token.clear();
  };
  for (char c : text) {
    if (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r') flush();
    else token.push_back(c);
  }
  flush();
  return ids;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(2, path + ": cannot open (" + std::strerror(errno) + ")");
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

std::vector<int64_t> read_ids(const Options& o) {
  if (!o.ids.empty()) return parse_id_text(o.ids, "--ids");
  if (!o.ids_file.empty()) return parse_id_text(read_file(o.ids_file), o.ids_file);
  const std::string raw = read_file(o.inputs);
  if (raw.size() % sizeof(int64_t) != 0) {
    fail(2, o.inputs + ": " + std::to_string(raw.size()) + " bytes is not a whole number of int64 ids");
  }
  std::vector<int64_t> ids(raw.size() / sizeof(int64_t));
  // Raw files are little-endian by contract; every target ExecuTorch supports is little-endian.
  std::memcpy(ids.data(), raw.data(), raw.size());
  return ids;
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

std::string shape_text(Span<const int32_t> sizes) {
  std::string s;
  for (size_t i = 0; i < sizes.size(); ++i) s += (i ? "x" : "") + std::to_string(sizes[i]);
  return s.empty() ? "scalar" : s;
}

const char* dtype_name(ScalarType t) {
  switch (t) {
    case ScalarType::Long: return "int64";
    case ScalarType::Int: return "int32";
    case ScalarType::Float: return "float32";
    case ScalarType::Double: return "float64";
    case ScalarType::Half: return "float16";
    case ScalarType::Bool: return "bool";
    case ScalarType::Byte: return "uint8";
    case ScalarType::Char: return "int8";
    default: return "other";
  }
}

double value_at(const Tensor& t, size_t i) {
  switch (t.scalar_type()) {
    case ScalarType::Float: return t.const_data_ptr<float>()[i];
    case ScalarType::Double: return t.const_data_ptr<double>()[i];
    case ScalarType::Long: return static_cast<double>(t.const_data_ptr<int64_t>()[i]);
    case ScalarType::Int: return t.const_data_ptr<int32_t>()[i];
    default: fail(1, std::string("output of dtype ") + dtype_name(t.scalar_type()) + " is not supported");
  }
}

bool is_float(ScalarType t) { return t == ScalarType::Float || t == ScalarType::Double; }
bool is_index(ScalarType t) { return t == ScalarType::Long || t == ScalarType::Int; }

// Row 0's (item, score) pairs, best first: the graph's own top-k (an index and a score output of
// equal size, as easrec exports), or the k best of a single score output over the catalogue.
std::vector<std::pair<int64_t, double>> top_items(const std::vector<EValue>& outs, long topk) {
  std::vector<const Tensor*> tensors;
  for (const auto& v : outs) if (v.isTensor()) tensors.push_back(&v.toTensor());
  const Tensor* idx = nullptr;
  const Tensor* score = nullptr;
  for (const Tensor* t : tensors) {
    if (!idx && is_index(t->scalar_type())) idx = t;
    else if (!score && is_float(t->scalar_type())) score = t;
  }
  if (!score) fail(1, "the program returns no floating-point score tensor");
  const size_t row = score->dim() >= 2 ? static_cast<size_t>(score->size(score->dim() - 1)) : score->numel();
  std::vector<std::pair<int64_t, double>> items;
  if (idx) {
    if (idx->numel() != score->numel()) fail(1, "the program's index and score outputs differ in size");
    for (size_t i = 0; i < row; ++i) items.emplace_back(static_cast<int64_t>(value_at(*idx, i)), value_at(*score, i));
    // Stable by score: the graph already returns them sorted, which this keeps.
    std::stable_sort(items.begin(), items.end(), [](auto& a, auto& b) { return a.second > b.second; });
  } else {
    for (size_t i = 0; i < row; ++i) items.emplace_back(static_cast<int64_t>(i), value_at(*score, i));
    const size_t k = topk > 0 ? std::min(row, static_cast<size_t>(topk)) : std::min<size_t>(row, 10);
    std::partial_sort(items.begin(), items.begin() + k, items.end(),
                      [](auto& a, auto& b) { return a.second > b.second || (a.second == b.second && a.first < b.first); });
    items.resize(k);
  }
  if (topk > 0 && items.size() > static_cast<size_t>(topk)) items.resize(topk);
  return items;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

} // namespace

int main(int argc, char** argv) {
  const Options opt = parse_args(argc, argv);
  // Bad ids are a usage error: report them before the runtime starts logging.
  std::vector<int64_t> history = read_ids(opt);
  executorch::runtime::runtime_init();

#if defined(ET_USE_THREADPOOL)
  // XNNPACK runs on this pool: size it before the method (and its delegate) is initialised,
  // as the Python runtime does with _unsafe_reset_threadpool.
  executorch::extension::threadpool::get_threadpool()->_unsafe_reset_threadpool(static_cast<uint32_t>(opt.threads));
  const bool threads_applied = true;
#else
  const bool threads_applied = opt.threads == 1;
#endif

#if defined(EASREC_HAVE_ETDUMP)
  const char* etdump_support = "yes";
#else
  const char* etdump_support = "no";
  if (!opt.etdump_path.empty()) {
    fail(2, "--etdump_path: this runner was built without ETDump (the ExecuTorch package it was built against ships no etdump library)");
  }
#endif
  std::printf("easrec_runner format=%d executorch=%s etdump=%s threads=%ld%s\n", kFormatVersion,
              EASREC_EXECUTORCH_VERSION, etdump_support, opt.threads, threads_applied ? "" : " threads_ignored=1");

  const auto t_load = std::chrono::steady_clock::now();
  Result<FileDataLoader> loader = FileDataLoader::from(opt.model_path.c_str());
  if (!loader.ok()) fail(1, opt.model_path + ": cannot open: " + describe(loader.error()));
  Result<Program> program = Program::load(&loader.get());
  if (!program.ok()) fail(1, opt.model_path + ": not a loadable ExecuTorch program: " + describe(program.error()));

  std::string method_name = opt.method;
  if (method_name.empty()) {
    // "forward" when the program has it (what easrec exports), else its first method.
    method_name = "forward";
    bool found = false;
    for (size_t i = 0; i < program->num_methods(); ++i) {
      auto n = program->get_method_name(i);
      if (n.ok() && method_name == *n) found = true;
    }
    if (!found) {
      auto first = program->get_method_name(0);
      if (!first.ok()) fail(1, opt.model_path + ": the program has no methods");
      method_name = *first;
    }
  }
  Result<MethodMeta> meta = program->method_meta(method_name.c_str());
  if (!meta.ok()) fail(1, opt.model_path + ": no method '" + method_name + "': " + describe(meta.error()));

  // Input 0 must be the int64 id tensor [B, L]; the window L comes from the program, not from the caller.
  if (meta->num_inputs() != 1) {
    fail(1, opt.model_path + ": method '" + method_name + "' takes " + std::to_string(meta->num_inputs()) +
                " inputs; easrec artifacts take one (item ids [B, L])");
  }
  auto tag = meta->input_tag(0);
  if (!tag.ok() || *tag != Tag::Tensor) fail(1, opt.model_path + ": input 0 is not a tensor");
  auto in_meta = meta->input_tensor_meta(0);
  if (!in_meta.ok()) fail(1, opt.model_path + ": cannot read input 0's metadata: " + describe(in_meta.error()));
  const ScalarType in_type = in_meta->scalar_type();
  const Span<const int32_t> in_sizes = in_meta->sizes();
  if (in_type != ScalarType::Long || in_sizes.size() != 2) {
    fail(1, opt.model_path + ": input 0 is " + dtype_name(in_type) + " [" + shape_text(in_sizes) +
                "]; expected int64 item ids [B, L]");
  }
  const int32_t batch = in_sizes[0], window = in_sizes[1];

  // Planned memory: one buffer per planned arena, sized by the program's memory plan.
  std::vector<std::vector<uint8_t>> arenas;
  std::vector<Span<uint8_t>> spans;
  for (size_t i = 0; i < meta->num_memory_planned_buffers(); ++i) {
    arenas.emplace_back(static_cast<size_t>(meta->memory_planned_buffer_size(i).get()));
    spans.emplace_back(arenas.back().data(), arenas.back().size());
  }
  HierarchicalAllocator planned({spans.data(), spans.size()});
  MallocMemoryAllocator method_allocator;
  MallocMemoryAllocator temp_allocator;
  MemoryManager memory(&method_allocator, &planned, &temp_allocator);

  std::unique_ptr<EventTracer> tracer;
#if defined(EASREC_HAVE_ETDUMP)
  // Only with --etdump_path: a tracer records every operator and would slow the timed loop.
  if (!opt.etdump_path.empty()) tracer = std::make_unique<executorch::etdump::ETDumpGen>();
#endif
  Result<Method> method = program->load_method(method_name.c_str(), &memory, tracer.get());
  if (!method.ok()) fail(1, opt.model_path + ": cannot load method '" + method_name + "': " + describe(method.error()));
  const double load_ms = ms_since(t_load);
  std::printf("model path=%s method=%s load_ms=%.6f\n", opt.model_path.c_str(), method_name.c_str(), load_ms);

  // Left pad with 0 to the window; a longer history keeps its newest ids (the graph sees L items).
  const size_t given = history.size();
  const size_t truncated = given > static_cast<size_t>(window) ? given - window : 0;
  std::vector<int64_t> row(window, 0);
  std::copy(history.begin() + truncated, history.end(), row.end() - (given - truncated));
  std::vector<int64_t> data;
  data.reserve(static_cast<size_t>(batch) * window);
  for (int32_t b = 0; b < batch; ++b) data.insert(data.end(), row.begin(), row.end());
  std::printf("input index=0 dtype=int64 shape=%s ids=%zu padded=%zu truncated=%zu\n", shape_text(in_sizes).c_str(),
              given, static_cast<size_t>(window) - (given - truncated), truncated);

  TensorImpl::SizesType sizes[2] = {batch, window};
  TensorImpl::DimOrderType dim_order[2] = {0, 1};
  TensorImpl::StridesType strides[2] = {window, 1};
  TensorImpl impl(ScalarType::Long, 2, sizes, data.data(), dim_order, strides);
  const EValue input{Tensor(&impl)};

  // One iteration = set_input + execute, what one inference costs an application (the input is
  // set every time because a memory-planned input's buffer may be reused by the plan).
  auto run_once = [&](const char* what, long i) -> double {
    const auto t0 = std::chrono::steady_clock::now();
    Error err = method->set_input(input, 0);
    if (err == Error::Ok) err = method->execute();
    const double ms = ms_since(t0);
    if (err != Error::Ok) fail(1, std::string(what) + " " + std::to_string(i) + " failed: " + describe(err));
    return ms;
  };
  for (long i = 1; i <= opt.warmup; ++i) std::printf("warmup %ld %.6f\n", i, run_once("warm-up", i));
  std::vector<double> times;
  times.reserve(opt.iterations);
  for (long i = 1; i <= opt.iterations; ++i) {
    times.push_back(run_once("iteration", i));
    std::printf("iteration %ld %.6f\n", i, times.back());
  }
  const double total = std::accumulate(times.begin(), times.end(), 0.0);
  std::printf("summary iterations=%zu total_ms=%.6f median_ms=%.6f min_ms=%.6f\n", times.size(), total, median(times),
              *std::min_element(times.begin(), times.end()));

  std::vector<EValue> outputs(method->outputs_size());
  Error err = method->get_outputs(outputs.data(), outputs.size());
  if (err != Error::Ok) fail(1, "reading outputs failed: " + describe(err));
  long rank = 0;
  for (const auto& [item, score] : top_items(outputs, opt.topk)) {
    std::printf("topk rank=%ld item=%" PRId64 " score=%.9g\n", ++rank, item, score);
  }

#if defined(EASREC_HAVE_ETDUMP)
  if (tracer) {
    auto* gen = static_cast<executorch::etdump::ETDumpGen*>(tracer.get());
    executorch::etdump::ETDumpResult dump = gen->get_etdump_data();
    if (dump.buf == nullptr || dump.size == 0) fail(1, "ETDump: no data was recorded");
    FILE* f = std::fopen(opt.etdump_path.c_str(), "wb");
    if (!f) fail(1, opt.etdump_path + ": cannot write (" + std::strerror(errno) + ")");
    const size_t wrote = std::fwrite(dump.buf, 1, dump.size, f);
    const bool closed = std::fclose(f) == 0;
    std::free(dump.buf);
    if (wrote != dump.size || !closed) fail(1, opt.etdump_path + ": short write");
    std::printf("etdump path=%s bytes=%zu\n", opt.etdump_path.c_str(), dump.size);
  }
#endif
  std::printf("done\n");
  return 0;
}
