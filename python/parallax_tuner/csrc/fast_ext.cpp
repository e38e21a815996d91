// The eager fast path in C++ (issue #14: an eager call from Python in <= 10 us of host time).
//
// python/parallax_tuner/_fast.py keeps, per thread, a validated argument struct and plan for
// each call signature (every tensor's shape, strides, dtype and device, plus the options). A
// repeat there still spends ~4 us in Python: building the signature tuple, torch.empty_like,
// the ctypes call. This module does the same repeat in C++: run() reads the signature from
// the tensors, finds the thread's record, allocates `out`, writes the data pointers into the
// record's struct and calls plx_*_plan_run with the current stream. The library checks every
// run against its plan, so nothing unchecked is launched. A miss returns None and the caller
// takes the Python way, which then remember()s the new signature here.
//
// The records borrow from the Python side: the struct, the plan and the context belong to a
// _fast.Entry that the thread's Python cache holds. Whenever that cache forgets entries it
// calls clear_thread() (or clear() for every thread), so a record never outlives its Entry.
// Nothing here depends on parallax.h: the struct is bytes at an address, the offsets of its
// data pointers come from ctypes.
//
// Built against the installed torch by parallax_tuner.torch_ext (torch.utils.cpp_extension).
#include <Python.h>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/csrc/autograd/python_variable.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <unordered_map>
#include <vector>

namespace {

constexpr int kMaxTensors = 12;
using RunFn = int (*)(void* ctx, void* plan, void* args, void* stream);

enum class Alloc : int { kNone = 0, kEmptyLike = 1, kNewEmpty = 2 };

struct Record {
  PyObject* opts = nullptr;  // strong; see ThreadMap's destructor
  std::vector<int64_t> sig;
  char* args = nullptr;              // the Entry's ctypes struct
  std::vector<int64_t> offsets;      // per tensor position: its data pointer's offset, -1 none
  void* plan = nullptr;
  void* ctx = nullptr;
  RunFn run = nullptr;
  int device = 0;
  Alloc alloc = Alloc::kNone;
  std::vector<int64_t> out_shape;
};

std::atomic<uint64_t> g_generation{1};

// One per thread: records hashed by signature and options. On thread exit the map goes
// without a thread state, so it leaks its few option tuples rather than touch refcounts.
struct ThreadMap {
  uint64_t generation = 0;
  std::unordered_multimap<size_t, Record> records;
  void Clear() {  // with the GIL held
    for (auto& [h, r] : records) Py_XDECREF(r.opts);
    records.clear();
  }
};
thread_local ThreadMap t_map;

ThreadMap& Map() {
  const uint64_t g = g_generation.load(std::memory_order_acquire);
  if (t_map.generation != g) {
    t_map.Clear();
    t_map.generation = g;
  }
  return t_map;
}

// Appends one tensor's signature; false for an object that is neither a tensor nor None.
bool AppendSig(PyObject* o, std::vector<int64_t>& sig, bool* wants_grad) {
  if (o == Py_None) {
    sig.push_back(-1);
    return true;
  }
  if (!THPVariable_Check(o)) return false;
  const at::Tensor& t = THPVariable_Unpack(o);
  const int64_t nd = t.dim();
  sig.push_back(nd);
  const auto sizes = t.sizes();
  const auto strides = t.strides();
  sig.insert(sig.end(), sizes.begin(), sizes.end());
  sig.insert(sig.end(), strides.begin(), strides.end());
  sig.push_back(static_cast<int64_t>(t.scalar_type()));
  sig.push_back(t.is_cuda() ? t.get_device() : -2);
  if (t.requires_grad()) *wants_grad = true;
  return true;
}

size_t HashSig(const std::vector<int64_t>& sig, Py_hash_t opts_hash) {
  uint64_t h = 1469598103934665603ull ^ static_cast<uint64_t>(opts_hash);
  for (int64_t x : sig) h = (h ^ static_cast<uint64_t>(x)) * 1099511628211ull;
  return static_cast<size_t>(h);
}

// Signature of args[1..n) and the hash with args[0] (the options); false: not ours to run.
bool Signature(PyObject* const* args, Py_ssize_t n, std::vector<int64_t>& sig, size_t* hash) {
  if (n < 2 || n - 1 > kMaxTensors) return false;
  bool wants_grad = false;
  sig.clear();
  for (Py_ssize_t i = 1; i < n; ++i)
    if (!AppendSig(args[i], sig, &wants_grad)) return false;
  if (wants_grad && at::GradMode::is_enabled()) return false;  // autograd: the Python way
  const Py_hash_t oh = PyObject_Hash(args[0]);
  if (oh == -1) {
    PyErr_Clear();
    return false;
  }
  *hash = HashSig(sig, oh);
  return true;
}

// run(opts, t1, ..., tn): the result tensor (`out`, the last position, allocated when None),
// None on a miss, or the plx_status (an int) of a failed run.
PyObject* Run(PyObject*, PyObject* const* args, Py_ssize_t n) {
  thread_local std::vector<int64_t> sig;
  size_t hash = 0;
  if (!Signature(args, n, sig, &hash)) Py_RETURN_NONE;
  ThreadMap& m = Map();
  const Record* rec = nullptr;
  auto range = m.records.equal_range(hash);
  for (auto it = range.first; it != range.second; ++it) {
    if (it->second.sig != sig) continue;
    const int eq = PyObject_RichCompareBool(it->second.opts, args[0], Py_EQ);
    if (eq < 0) {
      PyErr_Clear();
      Py_RETURN_NONE;
    }
    if (eq) {
      rec = &it->second;
      break;
    }
  }
  if (rec == nullptr) Py_RETURN_NONE;
  const Py_ssize_t nt = n - 1;
  at::Tensor out;
  PyObject* out_obj = args[n - 1];
  if (out_obj == Py_None) {
    const at::Tensor& q = THPVariable_Unpack(args[1]);
    if (rec->alloc == Alloc::kEmptyLike) {
      out = at::empty_like(q);
    } else if (rec->alloc == Alloc::kNewEmpty) {
      out = at::empty(rec->out_shape, q.options());
    } else {
      Py_RETURN_NONE;
    }
  }
  for (Py_ssize_t i = 0; i < nt; ++i) {
    const int64_t off = rec->offsets[i];
    if (off < 0) continue;
    void* ptr = nullptr;
    if (i == nt - 1 && out_obj == Py_None) {
      ptr = out.data_ptr();
    } else if (args[1 + i] != Py_None) {
      ptr = THPVariable_Unpack(args[1 + i]).data_ptr();
    }
    std::memcpy(rec->args + off, &ptr, sizeof(ptr));
  }
  void* stream = c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(rec->device)).stream();
  const int status = rec->run(rec->ctx, rec->plan, rec->args, stream);
  if (status != 0) return PyLong_FromLong(status);
  if (out_obj != Py_None) {
    Py_INCREF(out_obj);
    return out_obj;
  }
  return THPVariable_Wrap(std::move(out));
}

int64_t AsInt(PyObject* o) { return static_cast<int64_t>(PyLong_AsLongLong(o)); }

std::vector<int64_t> IntTuple(PyObject* o) {
  std::vector<int64_t> v;
  if (o == Py_None) return v;
  PyObject* seq = PySequence_Fast(o, "expected a sequence of ints");
  if (seq == nullptr) return v;
  const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
  for (Py_ssize_t i = 0; i < n; ++i) v.push_back(AsInt(PySequence_Fast_GET_ITEM(seq, i)));
  Py_DECREF(seq);
  return v;
}

// remember(opts, tensors, args_addr, offsets, plan, ctx, run_fn, device, alloc, out_shape):
// `tensors` as run() will receive them (out last, None when run allocates it).
PyObject* Remember(PyObject*, PyObject* const* args, Py_ssize_t n) {
  if (n != 10) {
    PyErr_SetString(PyExc_TypeError, "remember() takes 10 arguments");
    return nullptr;
  }
  PyObject* tensors = PySequence_Fast(args[1], "tensors: expected a tuple");
  if (tensors == nullptr) return nullptr;
  const Py_ssize_t nt = PySequence_Fast_GET_SIZE(tensors);
  std::vector<PyObject*> call(nt + 1);
  call[0] = args[0];
  for (Py_ssize_t i = 0; i < nt; ++i) call[i + 1] = PySequence_Fast_GET_ITEM(tensors, i);
  Record r;
  size_t hash = 0;
  const bool ok = Signature(call.data(), nt + 1, r.sig, &hash);
  Py_DECREF(tensors);
  if (!ok) Py_RETURN_FALSE;  // not cacheable here (e.g. wants grad): the Python way keeps it
  r.args = reinterpret_cast<char*>(static_cast<uintptr_t>(PyLong_AsUnsignedLongLong(args[2])));
  r.offsets = IntTuple(args[3]);
  r.plan = PyLong_AsVoidPtr(args[4]);
  r.ctx = PyLong_AsVoidPtr(args[5]);
  r.run = reinterpret_cast<RunFn>(PyLong_AsVoidPtr(args[6]));
  r.device = static_cast<int>(AsInt(args[7]));
  r.alloc = static_cast<Alloc>(AsInt(args[8]));
  r.out_shape = IntTuple(args[9]);
  if (PyErr_Occurred()) return nullptr;
  if (static_cast<Py_ssize_t>(r.offsets.size()) != nt || r.args == nullptr || r.run == nullptr) {
    PyErr_SetString(PyExc_ValueError, "remember(): offsets must match tensors; args and run_fn set");
    return nullptr;
  }
  Py_INCREF(args[0]);
  r.opts = args[0];
  Map().records.emplace(hash, std::move(r));
  Py_RETURN_TRUE;
}

PyObject* ClearThread(PyObject*, PyObject*) {
  Map().Clear();
  Py_RETURN_NONE;
}

PyObject* ClearAll(PyObject*, PyObject*) {
  g_generation.fetch_add(1, std::memory_order_acq_rel);
  Map();  // this thread now; the others on their next call
  Py_RETURN_NONE;
}

PyObject* Size(PyObject*, PyObject*) { return PyLong_FromSize_t(Map().records.size()); }

PyMethodDef kMethods[] = {
    {"run", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(Run)), METH_FASTCALL,
     "run(opts, *tensors) -> out tensor | None (miss) | int (plx_status of a failed run)"},
    {"remember", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(Remember)), METH_FASTCALL,
     "remember(opts, tensors, args_addr, offsets, plan, ctx, run_fn, device, alloc, out_shape) -> bool"},
    {"clear_thread", ClearThread, METH_NOARGS, "forget this thread's records"},
    {"clear", ClearAll, METH_NOARGS, "forget every thread's records"},
    {"size", Size, METH_NOARGS, "this thread's record count"},
    {nullptr, nullptr, 0, nullptr}};

#define PLX_STR2(x) #x
#define PLX_STR(x) PLX_STR2(x)
PyModuleDef kModule = {PyModuleDef_HEAD_INIT, PLX_STR(TORCH_EXTENSION_NAME),
                       "parallax_tuner's eager fast path in C++", -1, kMethods, nullptr, nullptr, nullptr, nullptr};

}  // namespace

#define PLX_INIT2(name) PyInit_##name
#define PLX_INIT(name) PLX_INIT2(name)
PyMODINIT_FUNC PLX_INIT(TORCH_EXTENSION_NAME)(void) { return PyModule_Create(&kModule); }
