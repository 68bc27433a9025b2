// shmetrics._shmetrics: the native Python module (docs/python.md).
//
// The cold path (registries, families, errors, collection) is bound with pybind11. The hot
// path (a child's inc/set/observe) is three small CPython types with METH_FASTCALL methods:
// pybind11's dispatcher costs ~100 ns a call, more than the whole rest of an increment
// (docs/python.md has the figures). A child holds the C++ writer's handle and calls its
// inline hot path: no lock, no allocation, no syscall, with the GIL held.
//
// Fork: the C++ registry makes itself inert in a child of fork(). The module keeps every
// registry, family and child it made, and after a fork (os.register_at_fork) gives each
// inherited registry a new segment of the child's own and rebinds every handle to it.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>  // std::find
#include <cstdint>    // cells
#include <cstdlib>    // getenv
#include <map>        // collectors by (dir, prefix)
#include <memory>     // unique_ptr
#include <string>     // names
#include <utility>    // pair
#include <vector>     // families
#include <time.h>     // clock_gettime

#include <shmetrics/process_metrics.hpp>
#include <shmetrics/reader/collector.hpp>
#include <shmetrics/registry.hpp>
#if SHMETRICS_PY_CATALOG
#include <shmetrics/catalog/catalog.hpp>
#endif

namespace py = pybind11;

SHMETRICS_BEGIN_NAMESPACE
namespace detail {
// This module's view of a handle's cells (as cuda/src/sink.cu defines its own): what a
// child's get() reads. One definition in this shared object.
struct handle_access {
  static std::uint64_t* cells(const counter& c) noexcept { return c.cell_; }
  static std::uint64_t* cells(const histogram& h) noexcept { return h.cells_; }
  static registry_state* state(registry& r) noexcept { return r.state_.get(); }
};
}  // namespace detail
SHMETRICS_END_NAMESPACE

namespace {

using shmetrics::gauge_mode;
using shmetrics::metric_type;

PyObject* error_type = nullptr;         // shmetrics.Error (RuntimeError)
PyObject* segment_full_type = nullptr;  // shmetrics.SegmentFullError (Error)

// Raises the Python exception for a C++ error: ValueError for a bad name, label, bucket
// list or option; SegmentFullError for a full segment; Error otherwise.
[[noreturn]] void raise(const shmetrics::error& e) {
  using shmetrics::errc;
  const std::string msg = e.message();
  switch (e.code) {
    case errc::families_full:
    case errc::series_full:
    case errc::strings_full:
    case errc::cells_full:
    case errc::no_space:
      PyErr_SetString(segment_full_type, msg.c_str());
      throw py::error_already_set();
    case errc::invalid_metric_name:
    case errc::invalid_label_name:
    case errc::reserved_label_name:
    case errc::duplicate_label_name:
    case errc::invalid_utf8:
    case errc::label_count_mismatch:
    case errc::invalid_buckets:
    case errc::family_conflict:
    case errc::wrong_family_type:
    case errc::sample_name_collision:
    case errc::invalid_options:
      throw py::value_error(msg);
    default:
      PyErr_SetString(error_type, msg.c_str());
      throw py::error_already_set();
  }
}

template <class T>
T take(shmetrics::result<T>&& r) {
  if (!r) raise(r.error());
  return std::move(*r);
}

struct py_registry;
struct py_family;

// The family kinds are the segment's own (counter, gauge, histogram, info).
using kind = metric_type;

// ---- children: the hot path, in the CPython C API ---------------------------------------

struct child_object {
  PyObject_HEAD shmetrics::counter c;
  shmetrics::gauge g;
  shmetrics::histogram h;
  // Where get() finds the other shards: the segment header (shard count and stride).
  const shmetrics::layout::segment_header* hdr;
  py_registry* reg;      // the registry whose list holds this child (alive: family_ref)
  py_family* fam;        // owned by family_ref
  PyObject* family_ref;  // strong: keeps the family, hence the registry and its segment
  PyObject* values;      // tuple of str: the label values
  bool live;             // still in its family (not removed): rebound after fork
  child_object* prev;    // the registry's list of children
  child_object* next;
};

PyTypeObject* counter_child_type = nullptr;
PyTypeObject* gauge_child_type = nullptr;
PyTypeObject* histogram_child_type = nullptr;

// A numeric argument as a double (int, float, bool, anything with __float__/__index__).
inline bool to_double(PyObject* o, double& v) {
  if (PyFloat_CheckExact(o)) {
    v = PyFloat_AS_DOUBLE(o);
    return true;
  }
  v = PyLong_CheckExact(o) ? PyLong_AsDouble(o) : PyFloat_AsDouble(o);
  return !(v == -1.0 && PyErr_Occurred());
}

// The one optional argument of a hot method: positional, or the keyword `name`; the
// keyword `exemplar` (prometheus_client's) is accepted and ignored. *out stays null
// when the argument is absent. False with an exception set on a bad call.
inline bool one_arg(const char* method, const char* name, PyObject* const* args, Py_ssize_t nargs,
                    PyObject* kwnames, PyObject** out) {
  *out = nargs > 0 ? args[0] : nullptr;
  Py_ssize_t positional_max = 2;  // amount, exemplar
  if (nargs > positional_max) {
    PyErr_Format(PyExc_TypeError, "%s() takes at most 2 arguments (%zd given)", method, nargs);
    return false;
  }
  if (kwnames == nullptr) return true;
  const Py_ssize_t nk = PyTuple_GET_SIZE(kwnames);
  for (Py_ssize_t i = 0; i < nk; ++i) {
    PyObject* k = PyTuple_GET_ITEM(kwnames, i);
    if (PyUnicode_CompareWithASCIIString(k, name) == 0) {
      if (nargs > 0) {
        PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", method, name);
        return false;
      }
      *out = args[nargs + i];
    } else if (PyUnicode_CompareWithASCIIString(k, "exemplar") != 0) {
      PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", method, k);
      return false;
    }
  }
  return true;
}

// The one required argument of set()/observe() as a double: the fast path for a lone
// positional argument, else one_arg() and a TypeError naming what is missing.
inline bool required_double(const char* method, const char* name, PyObject* const* args,
                            Py_ssize_t nargs, PyObject* kwnames, double& v) {
  PyObject* a;
  if (nargs == 1 && kwnames == nullptr) [[likely]] {
    a = args[0];
  } else {
    if (!one_arg(method, name, args, nargs, kwnames, &a)) return false;
    if (a == nullptr) {
      PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", method, name);
      return false;
    }
  }
  return to_double(a, v);
}

PyObject* counter_inc(PyObject* self_, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  auto* self = reinterpret_cast<child_object*>(self_);
  if (nargs == 0 && kwnames == nullptr) [[likely]] {
    self->c.inc();
    Py_RETURN_NONE;
  }
  PyObject* a;
  if (!one_arg("inc", "amount", args, nargs, kwnames, &a)) return nullptr;
  if (a == nullptr) {
    self->c.inc();
    Py_RETURN_NONE;
  }
  if (PyLong_CheckExact(a)) {
    int overflow = 0;
    long long n = PyLong_AsLongLongAndOverflow(a, &overflow);
    if (overflow == 0) {
      if (n == -1 && PyErr_Occurred()) return nullptr;
      if (n < 0) goto negative;
      self->c.add(n);
      Py_RETURN_NONE;
    }
  }
  {
    double v;
    if (!to_double(a, v)) return nullptr;
    if (v < 0) goto negative;
    self->c.add(v);
    Py_RETURN_NONE;
  }
negative:
  PyErr_SetString(PyExc_ValueError, "Counters can only be incremented by non-negative amounts.");
  return nullptr;
}

// Sums a series' cell over every shard of its segment (this process's value).
template <class T>
T sum_shards(const shmetrics::layout::segment_header* hdr, const std::uint64_t* cell) {
  T total{};
  if (!hdr || !cell) return total;
  for (std::uint32_t s = 0; s < hdr->shard_count; ++s) {
    const auto* p = reinterpret_cast<const std::uint64_t*>(reinterpret_cast<const char*>(cell) +
                                                           s * hdr->shard_stride);
    const std::uint64_t bits = shmetrics::detail::load_relaxed(const_cast<std::uint64_t*>(p));
    if constexpr (std::is_same_v<T, double>)
      total += std::bit_cast<double>(bits);
    else
      total += bits;
  }
  return total;
}

PyObject* counter_get(PyObject* self_, PyObject*) {
  auto* self = reinterpret_cast<child_object*>(self_);
  const std::uint64_t* cell = shmetrics::detail::handle_access::cells(self->c);
  if (!cell) return PyFloat_FromDouble(0.0);
  const double v = static_cast<double>(sum_shards<std::uint64_t>(self->hdr, cell)) +
                   sum_shards<double>(self->hdr, cell + 1);
  return PyFloat_FromDouble(v);
}

PyObject* gauge_set(PyObject* self_, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  double v;
  if (!required_double("set", "value", args, nargs, kwnames, v)) return nullptr;
  reinterpret_cast<child_object*>(self_)->g.set(v);
  Py_RETURN_NONE;
}

template <int Sign>
PyObject* gauge_add(PyObject* self_, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  auto* self = reinterpret_cast<child_object*>(self_);
  PyObject* a;
  if (!one_arg(Sign > 0 ? "inc" : "dec", "amount", args, nargs, kwnames, &a)) return nullptr;
  double v = 1.0;
  if (a != nullptr && !to_double(a, v)) return nullptr;
  self->g.add(Sign * v);
  Py_RETURN_NONE;
}

PyObject* gauge_set_to_current_time(PyObject* self_, PyObject*) {
  reinterpret_cast<child_object*>(self_)->g.set_to_current_time();
  Py_RETURN_NONE;
}

PyObject* gauge_get(PyObject* self_, PyObject*) {
  return PyFloat_FromDouble(reinterpret_cast<child_object*>(self_)->g.value());
}

PyObject* histogram_observe(PyObject* self_, PyObject* const* args, Py_ssize_t nargs,
                            PyObject* kwnames) {
  double v;
  if (!required_double("observe", "amount", args, nargs, kwnames, v)) return nullptr;
  reinterpret_cast<child_object*>(self_)->h.observe(v);
  Py_RETURN_NONE;
}

// (count, sum) of this process's observations.
PyObject* histogram_get(PyObject* self_, PyObject*) {
  auto* self = reinterpret_cast<child_object*>(self_);
  const std::uint64_t* cells = shmetrics::detail::handle_access::cells(self->h);
  std::uint64_t count = 0;
  double sum = 0;
  if (cells) {
    const std::uint32_t n = self->h.bound_count();
    for (std::uint32_t b = 0; b <= n; ++b)
      count += sum_shards<std::uint64_t>(self->hdr, cells + b);
    sum = sum_shards<double>(self->hdr, cells + n + 1);
  }
  return Py_BuildValue("(Kd)", static_cast<unsigned long long>(count), sum);
}

// Per-bucket counts (non-cumulative, +Inf last) of this process's observations.
PyObject* histogram_buckets(PyObject* self_, PyObject*) {
  auto* self = reinterpret_cast<child_object*>(self_);
  const std::uint64_t* cells = shmetrics::detail::handle_access::cells(self->h);
  const std::uint32_t n = cells ? self->h.bound_count() : 0;
  PyObject* out = PyList_New(cells ? n + 1 : 0);
  if (!out) return nullptr;
  for (std::uint32_t b = 0; cells && b <= n; ++b)
    PyList_SET_ITEM(out, b,
                    PyLong_FromUnsignedLongLong(sum_shards<std::uint64_t>(self->hdr, cells + b)));
  return out;
}

template <class F>
PyCFunction as_cfunc(F f) {
  return reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(f));
}

PyObject* child_labelvalues(PyObject* self_, void*) {
  auto* self = reinterpret_cast<child_object*>(self_);
  Py_INCREF(self->values);
  return self->values;
}
PyObject* child_family(PyObject* self_, void*) {
  auto* self = reinterpret_cast<child_object*>(self_);
  Py_INCREF(self->family_ref);
  return self->family_ref;
}
PyObject* child_live(PyObject* self_, void*) {
  return PyBool_FromLong(reinterpret_cast<child_object*>(self_)->live);
}

PyGetSetDef child_getset[] = {
    {"labelvalues", child_labelvalues, nullptr, "The label values of this child.", nullptr},
    {"family", child_family, nullptr, "The family this child belongs to.", nullptr},
    {"live", child_live, nullptr, "False once removed from its family (or its registry closed).",
     nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyMethodDef counter_methods[] = {
    {"inc", as_cfunc(counter_inc), METH_FASTCALL | METH_KEYWORDS,
     "inc(amount=1, exemplar=None): adds amount (>= 0) to the counter."},
    {"get", counter_get, METH_NOARGS, "This process's value of the counter."},
    {nullptr, nullptr, 0, nullptr},
};
PyMethodDef gauge_methods[] = {
    {"set", as_cfunc(gauge_set), METH_FASTCALL | METH_KEYWORDS, "set(value): sets the gauge."},
    {"inc", as_cfunc(gauge_add<1>), METH_FASTCALL | METH_KEYWORDS, "inc(amount=1): adds amount."},
    {"dec", as_cfunc(gauge_add<-1>), METH_FASTCALL | METH_KEYWORDS,
     "dec(amount=1): subtracts amount."},
    {"set_to_current_time", gauge_set_to_current_time, METH_NOARGS,
     "Sets the gauge to the current unix time in seconds."},
    {"get", gauge_get, METH_NOARGS, "The gauge's value in this process."},
    {nullptr, nullptr, 0, nullptr},
};
PyMethodDef histogram_methods[] = {
    {"observe", as_cfunc(histogram_observe), METH_FASTCALL | METH_KEYWORDS,
     "observe(amount, exemplar=None): records one observation."},
    {"get", histogram_get, METH_NOARGS, "(count, sum) of this process's observations."},
    {"buckets", histogram_buckets, METH_NOARGS,
     "This process's count per bucket (not cumulative; +Inf last)."},
    {nullptr, nullptr, 0, nullptr},
};

void child_dealloc(PyObject* self_);
PyObject* child_repr(PyObject* self_);

PyTypeObject* make_child_type(const char* name, PyMethodDef* methods) {
  PyType_Slot slots[] = {
      {Py_tp_dealloc, reinterpret_cast<void*>(child_dealloc)},
      {Py_tp_methods, methods},
      {Py_tp_getset, child_getset},
      {Py_tp_repr, reinterpret_cast<void*>(child_repr)},
      {0, nullptr},
  };
  PyType_Spec spec = {name, static_cast<int>(sizeof(child_object)), 0, Py_TPFLAGS_DEFAULT, slots};
  return reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&spec));
}

// ---- registries and families (pybind11) -------------------------------------------------

// shmetrics.PID as a constant label's value: the writing process's pid, taken again when a
// forked child registers the family in its own segment (prometheus_client's per-process
// gauges, multiprocess_mode "all"/"liveall", carry a pid label).
PyObject* pid_sentinel = nullptr;  // never freed: read until the module goes
const std::string pid_marker("\0pid", 4);

struct family_def {
  kind k = kind::counter;
  std::string name, help;
  std::vector<std::string> labelnames;
  std::vector<std::pair<std::string, std::string>> const_labels;
  std::vector<double> buckets;
  gauge_mode mode = gauge_mode::latest;
};

struct py_registry {
  shmetrics::registry_options opt;
  std::unique_ptr<shmetrics::registry> reg;  // null once closed
  std::vector<py_family*> families;          // live family objects (raw: each unlinks itself)
  // The families' Python objects, held as prometheus_client's registry holds its collectors:
  // a family stays registered when the caller drops it. close() lets them go.
  std::vector<py::object> family_objs;
  child_object* children = nullptr;  // every child made here (each unlinks itself)
  std::unique_ptr<shmetrics::process_metrics> pm;

  explicit py_registry(shmetrics::registry_options o);
  ~py_registry();
  void close();
  shmetrics::registry& get() {
    if (!reg)
      throw std::runtime_error("shmetrics: the registry is closed (" + opt.dir + ", " + opt.prefix +
                               ")");
    return *reg;
  }
  const shmetrics::layout::segment_header* header() {
    return reinterpret_cast<const shmetrics::layout::segment_header*>(
        shmetrics::detail::handle_access::state(*reg)->segment().base);
  }
  void rebind_after_fork();
};

// Every registry of this process, for the fork handler. Under the GIL.
std::vector<py_registry*>& all_registries() {
  static auto* v = new std::vector<py_registry*>;  // never destroyed: used at exit
  return *v;
}

struct py_family {
  family_def def;
  py::object registry_ref;  // keeps the registry alive
  py_registry* reg;
  shmetrics::family<shmetrics::counter> cf;
  shmetrics::family<shmetrics::gauge> gf;
  shmetrics::family<shmetrics::histogram> hf;
  py::dict children;  // tuple of label values -> child (strong; close() drops them)

  ~py_family() {
    if (reg) std::erase(reg->families, this);
  }
  void add_to(shmetrics::registry& r) {
    std::vector<std::string_view> labels(def.labelnames.begin(), def.labelnames.end());
    std::vector<shmetrics::const_label> consts;
    const std::string pid = std::to_string(getpid());  // shmetrics.PID, as of now
    for (auto& [n, v] : def.const_labels)
      consts.push_back({n, v == pid_marker ? std::string_view(pid) : std::string_view(v)});
    switch (def.k) {
      case kind::counter:
        cf = take(r.add_counter(
            {.name = def.name, .help = def.help, .labels = labels, .const_labels = consts}));
        break;
      case kind::gauge:
        gf = take(r.add_gauge({.name = def.name,
                               .help = def.help,
                               .labels = labels,
                               .mode = def.mode,
                               .const_labels = consts}));
        break;
      case kind::histogram:
        hf = take(r.add_histogram({.name = def.name,
                                   .help = def.help,
                                   .labels = labels,
                                   .buckets = def.buckets,
                                   .const_labels = consts}));
        break;
      case kind::info:
        gf = take(r.add_info(
            {.name = def.name, .help = def.help, .labels = labels, .const_labels = consts}));
        break;
    }
  }
  const std::string& stored_name() const {
    if (def.k == kind::counter) return cf ? cf.name() : def.name;
    if (def.k == kind::histogram) return hf ? hf.name() : def.name;
    return gf ? gf.name() : def.name;
  }
  // No registry behind the family any more (its re-registration after fork failed):
  // labels() then raises instead of reaching a registry that is gone.
  void detach() {
    cf = {};
    gf = {};
    hf = {};
  }
  // Points `ch` at the series of its label values in this family's current registry.
  void bind(child_object* ch) {
    std::vector<std::string> own;
    const Py_ssize_t n = PyTuple_GET_SIZE(ch->values);
    for (Py_ssize_t i = 0; i < n; ++i)
      own.emplace_back(PyUnicode_AsUTF8(PyTuple_GET_ITEM(ch->values, i)));
    std::vector<std::string_view> v(own.begin(), own.end());
    switch (def.k) {
      case kind::counter:
        ch->c = take(cf.with_labels(v));
        break;
      case kind::histogram:
        ch->h = take(hf.with_labels(v));
        break;
      default:
        ch->g = take(gf.with_labels(v));
        break;
    }
    ch->hdr = reg->header();
  }
};

void unlink_child(child_object* ch, py_registry* reg) {
  if (ch->prev)
    ch->prev->next = ch->next;
  else if (reg && reg->children == ch)
    reg->children = ch->next;
  if (ch->next) ch->next->prev = ch->prev;
  ch->prev = ch->next = nullptr;
}

void make_inert(child_object* ch) {
  ch->c = {};
  ch->g = {};
  ch->h = {};
  ch->hdr = nullptr;
  ch->live = false;
}

void child_dealloc(PyObject* self_) {
  auto* self = reinterpret_cast<child_object*>(self_);
  PyTypeObject* tp = Py_TYPE(self_);
  unlink_child(self, self->reg);
  Py_XDECREF(self->values);
  Py_XDECREF(self->family_ref);
  tp->tp_free(self_);
  Py_DECREF(tp);  // heap type
}

PyObject* child_repr(PyObject* self_) {
  auto* self = reinterpret_cast<child_object*>(self_);
  const char* name = self->fam ? self->fam->def.name.c_str() : "?";
  return PyUnicode_FromFormat("<shmetrics %s child %s%R>",
                              self->fam ? shmetrics::detail::type_word(self->fam->def.k) : "?",
                              name, self->values);
}

py_registry::py_registry(shmetrics::registry_options o) : opt(std::move(o)) {
  reg = std::make_unique<shmetrics::registry>(take(shmetrics::registry::create(opt)));
  all_registries().push_back(this);
}

py_registry::~py_registry() {
  close();
  std::erase(all_registries(), this);
}

void py_registry::close() {
  if (!reg) return;
  // Every handle into the segment goes inert first: the segment is unmapped below.
  for (child_object* ch = children; ch; ch = ch->next)
    make_inert(ch);
  for (py_family* f : families)
    f->children.clear();  // drops the family <-> child cycles
  pm.reset();
  reg.reset();
  // Last: letting the families go may free this registry (they hold it).
  std::vector<py::object> objs = std::move(family_objs);
  objs.clear();
}

// In a child of fork(): a new segment of this process's own, every family registered
// again and every live child pointed at it (values start at zero, as prometheus_client's
// per-pid files). The inherited registry (inert, private memory) goes after.
void py_registry::rebind_after_fork() {
  if (!reg || !reg->inherited_across_fork()) return;
  std::unique_ptr<shmetrics::registry> old = std::move(reg);
  const bool had_pm = pm != nullptr;
  // Safe in this child: process_metrics::release() leaves the state inherited from the
  // parent (its sampling thread's condition variable) alone (tests/fork_test.cpp).
  pm.reset();
  auto r = shmetrics::registry::create(opt);
  if (!r) {
    // Not raised (a fork handler): the handles stay inert, as the C++ registry leaves them.
    std::string msg = "shmetrics: no segment for the forked child: " + r.error().message();
    PyErr_WarnEx(PyExc_RuntimeWarning, msg.c_str(), 1);
    reg = std::move(old);
    return;
  }
  reg = std::make_unique<shmetrics::registry>(std::move(*r));
  for (py_family* f : families) {
    try {
      f->add_to(*reg);
    } catch (py::error_already_set& e) {
      f->detach();
      e.discard_as_unraisable("shmetrics: re-registering a family after fork");
    } catch (std::exception& e) {
      f->detach();
      PyErr_WarnEx(PyExc_RuntimeWarning, e.what(), 1);
    }
  }
  for (child_object* ch = children; ch; ch = ch->next) {
    if (!ch->live || !ch->fam) {
      make_inert(ch);
      continue;
    }
    try {
      ch->fam->bind(ch);
    } catch (py::error_already_set& e) {
      make_inert(ch);
      e.discard_as_unraisable("shmetrics: rebinding a child after fork");
    } catch (std::exception& e) {
      make_inert(ch);
      PyErr_WarnEx(PyExc_RuntimeWarning, e.what(), 1);
    }
  }
  if (had_pm) {
    auto p = shmetrics::process_metrics::create(*reg);
    if (p) {
      pm = std::make_unique<shmetrics::process_metrics>(std::move(*p));
      pm->sample_every(std::chrono::seconds(1));
    }
  }
  old.reset();
}

// Collectors by (dir, prefix), for generate_latest(): each keeps what a collector keeps
// across scrapes (counters that never go back, retired writers).
std::map<std::pair<std::string, std::string>, std::unique_ptr<shmetrics::collector>>& collectors() {
  static auto* m =
      new std::map<std::pair<std::string, std::string>, std::unique_ptr<shmetrics::collector>>;
  return *m;
}

void after_fork_child() {
  // The parent's collectors may have been collecting in another thread at fork: left
  // alone (leaked), new ones are made on demand.
  for (auto& [k, c] : collectors())
    (void)c.release();
  collectors().clear();
  for (py_registry* r : all_registries())
    r->rebind_after_fork();
}

gauge_mode parse_mode(const std::string& m) {
  static const std::pair<const char*, gauge_mode> modes[] = {
      {"sum", gauge_mode::sum},           {"max", gauge_mode::max},
      {"min", gauge_mode::min},           {"latest", gauge_mode::latest},
      {"live_sum", gauge_mode::live_sum}, {"live_max", gauge_mode::live_max},
      {"live_min", gauge_mode::live_min}, {"live_latest", gauge_mode::live_latest},
  };
  for (auto& [n, g] : modes)
    if (m == n) return g;
  throw py::value_error("gauge mode '" + m +
                        "' is not one of sum, max, min, latest, live_sum, live_max, live_min, "
                        "live_latest");
}

const char* mode_word(gauge_mode m) {
  static const char* const words[] = {"sum",      "max",      "min",      "latest",
                                      "live_sum", "live_max", "live_min", "live_latest"};
  return words[static_cast<int>(m) & 7];
}

std::vector<std::string> str_list(py::handle seq, const char* what, const std::string& fam) {
  std::vector<std::string> out;
  if (seq.is_none()) return out;
  if (py::isinstance<py::str>(seq))
    throw py::value_error(fam + ": " + what + " must be a sequence of names, not a string");
  for (py::handle h : seq) {
    if (!py::isinstance<py::str>(h))
      throw py::value_error(fam + ": " + what + " must be strings, got " +
                            std::string(py::repr(h)));
    out.push_back(h.cast<std::string>());
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> const_labels_of(py::handle d) {
  std::vector<std::pair<std::string, std::string>> out;
  if (d.is_none()) return out;
  for (auto [k, v] : d.cast<py::dict>())
    out.emplace_back(py::str(k).cast<std::string>(),
                     v.ptr() == pid_sentinel ? pid_marker : py::str(v).cast<std::string>());
  return out;
}

// Registers a family in `self` (a Registry object); ValueError on a name this registry
// already has (as prometheus_client refuses a duplicate in one CollectorRegistry).
// The fields every family registration fills the same way.
family_def family_of(kind k, const std::string& name, const std::string& documentation,
                     py::handle labelnames, py::handle const_labels) {
  family_def d;
  d.k = k;
  d.name = name;
  d.help = documentation;
  d.labelnames = str_list(labelnames, "labelnames", name);
  d.const_labels = const_labels_of(const_labels);
  return d;
}

py::object add_family(py::object self, family_def def) {
  auto& r = self.cast<py_registry&>();
  auto f = std::make_unique<py_family>();
  f->def = std::move(def);
  f->reg = nullptr;
  f->add_to(r.get());
  const std::string stored = f->stored_name();
  for (py_family* o : r.families)
    if (o->stored_name() == stored)
      throw py::value_error("shmetrics: duplicated family name '" + f->def.name +
                            "' in this registry (already registered as " +
                            shmetrics::detail::type_word(o->def.k) + " '" + o->def.name + "')");
  f->registry_ref = self;
  f->reg = &r;
  r.families.push_back(f.get());
  py::object obj = py::cast(std::move(f));
  r.family_objs.push_back(obj);
  return obj;
}

// The family's registry, open; RuntimeError when it is closed or the family unregistered.
py_registry& registered(py_family& f) {
  if (!f.reg) throw std::runtime_error("shmetrics: " + f.def.name + " was unregistered");
  if (!f.reg->reg)
    throw std::runtime_error("shmetrics: " + f.def.name + ": its registry is closed");
  return *f.reg;
}

py::object make_child(py_family& f, py::handle family_obj, py::tuple values) {
  PyTypeObject* tp = f.def.k == kind::counter     ? counter_child_type
                     : f.def.k == kind::histogram ? histogram_child_type
                                                  : gauge_child_type;
  auto* ch = PyObject_New(child_object, tp);
  if (!ch) throw py::error_already_set();
  new (&ch->c) shmetrics::counter();
  new (&ch->g) shmetrics::gauge();
  new (&ch->h) shmetrics::histogram();
  ch->hdr = nullptr;
  ch->fam = &f;
  ch->reg = f.reg;
  ch->family_ref = family_obj.ptr();
  Py_INCREF(ch->family_ref);
  ch->values = values.ptr();
  Py_INCREF(ch->values);
  ch->live = true;
  ch->prev = nullptr;
  ch->next = f.reg->children;
  if (ch->next) ch->next->prev = ch;
  f.reg->children = ch;
  py::object obj = py::reinterpret_steal<py::object>(reinterpret_cast<PyObject*>(ch));
  f.bind(ch);  // on an error, obj's dealloc unlinks it
  return obj;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (auto& x : v)
    s += (s.empty() ? "" : ", ") + x;
  return s;
}

// The label values of a labels()/remove() call as a tuple of str, in label name order.
py::tuple label_values(py_family& f, const char* method, py::args args, py::kwargs kw) {
  const auto& names = f.def.labelnames;
  if (kw && py::len(kw) > 0) {
    if (py::len(args) > 0)
      throw py::value_error(f.def.name + "." + method + "(): can't pass both *args and **kwargs");
    if (py::len(kw) != names.size())
      throw py::value_error(f.def.name + "." + method + "(): incorrect label names (want " +
                            join(names) + ")");
    py::tuple t(names.size());
    for (std::size_t i = 0; i < names.size(); ++i) {
      py::str k(names[i]);
      if (!kw.contains(k))
        throw py::value_error(f.def.name + "." + method + "(): incorrect label names (want " +
                              join(names) + ")");
      t[i] = py::str(kw[k]);
    }
    return t;
  }
  if (py::len(args) != names.size())
    throw py::value_error(f.def.name + "." + method + "(): incorrect label count: got " +
                          std::to_string(py::len(args)) + " value(s), want " +
                          std::to_string(names.size()) +
                          (names.empty() ? std::string(" (no labels)") : " (" + join(names) + ")"));
  py::tuple t(args.size());
  for (std::size_t i = 0; i < args.size(); ++i) {
    py::handle a = args[i];
    t[i] = py::isinstance<py::str>(a) ? py::reinterpret_borrow<py::str>(a) : py::str(a);
  }
  return t;
}

shmetrics::registry_options options_from(py::object dir, py::object prefix, py::kwargs opts) {
  shmetrics::registry_options o;
  auto env = [](const char* n) -> const char* {
    const char* v = std::getenv(n);
    return v && *v ? v : nullptr;
  };
  if (!dir.is_none())
    o.dir = py::str(dir).cast<std::string>();
  else if (const char* e = env("SHMETRICS_SHM_DIR"))
    o.dir = e;
  if (!prefix.is_none())
    o.prefix = prefix.cast<std::string>();
  else if (const char* e = env("SHMETRICS_SHM_PREFIX"))
    o.prefix = e;
  for (auto [k, v] : opts) {
    const std::string key = k.cast<std::string>();
    if (key == "max_families")
      o.max_families = v.cast<std::uint32_t>();
    else if (key == "max_series")
      o.max_series = v.cast<std::uint32_t>();
    else if (key == "max_cells")
      o.max_cells = v.cast<std::uint32_t>();
    else if (key == "string_bytes")
      o.string_bytes = v.cast<std::uint64_t>();
    else if (key == "shards")
      o.shards = v.cast<std::uint32_t>();
    else if (key == "heartbeat_interval_ms")
      o.heartbeat_interval = std::chrono::milliseconds(v.cast<std::int64_t>());
    else if (key == "callback_interval_ms")
      o.callback_interval = std::chrono::milliseconds(v.cast<std::int64_t>());
    else if (key == "unlink_on_close")
      o.unlink_on_close = v.cast<bool>();
    else
      throw py::type_error("shmetrics: unknown registry option '" + key +
                           "' (max_families, max_series, max_cells, string_bytes, shards, "
                           "heartbeat_interval_ms, callback_interval_ms, unlink_on_close)");
  }
  return o;
}

py::dict options_dict(const shmetrics::registry_options& o) {
  py::dict d;
  d["dir"] = o.dir;
  d["prefix"] = o.prefix;
  d["max_families"] = o.max_families;
  d["max_series"] = o.max_series;
  d["max_cells"] = o.max_cells;
  d["string_bytes"] = o.string_bytes;
  d["shards"] = o.shards;
  d["heartbeat_interval_ms"] = o.heartbeat_interval.count();
  d["callback_interval_ms"] = o.callback_interval.count();
  d["unlink_on_close"] = o.unlink_on_close;
  return d;
}

shmetrics::collector& collector_for(const std::string& dir, const std::string& prefix) {
  auto& m = collectors();
  auto& c = m[{dir, prefix}];
  if (!c) {
    shmetrics::collector_options o;
    o.dir = dir;
    o.prefixes = {prefix};
    // Never removes a dead writer's segment: several processes may serve /metrics from
    // one prefix (and an exporter may too); a segment one of them retired would be lost
    // to the others. Dead writers' values stay served (their files stay).
    o.gc_dead_after = std::chrono::milliseconds(0);
    c = std::make_unique<shmetrics::collector>(std::move(o));
  }
  return *c;
}

// The merged families of a collection: the collector appends its own (shmetrics_exporter_*,
// process_*) after them; those have no columns.
std::size_t merged_count(const shmetrics::collection& c) {
  return std::min(c.families.size(), c.columns.families.size());
}

// A hint for the next body's reservation (growing a 700 KB body by doubling copies it).
std::atomic<std::size_t> last_body_size{std::size_t{1} << 16};

py::bytes generate_latest(const std::string& dir, const std::string& prefix, bool openmetrics,
                          bool self_metrics) {
  std::string out;
  shmetrics::collector& coll = collector_for(dir, prefix);  // the map: under the GIL
  {
    py::gil_scoped_release nogil;
    auto c = coll.collect();
    const auto fmt = openmetrics ? shmetrics::exposition_format::openmetrics
                                 : shmetrics::exposition_format::text;
    out.reserve(last_body_size);
    shmetrics::encode(*c, fmt, out);  // exactly the exporter's body
    if (!self_metrics) {
      // Without the collector's own families (the last ones, a few KiB): encoded alone they
      // are the same bytes (they print from their own series), so they are cut off the
      // end rather than the merged families copied to encode them apart (0.1 ms at 10k
      // series). Checked; where the bytes differ, the merged families are encoded apart.
      const auto first_self = static_cast<std::ptrdiff_t>(merged_count(*c));
      std::vector<shmetrics::family_snapshot> own(c->families.begin() + first_self,
                                                  c->families.end());
      std::string tail;
      if (openmetrics)
        shmetrics::encode_openmetrics(own, tail);
      else
        shmetrics::encode_text(own, tail);
      const std::size_t eof = openmetrics ? 6 : 0;  // "# EOF\n" stays
      if (out.size() >= tail.size() + eof &&
          std::string_view(out).substr(out.size() - eof - tail.size(), tail.size()) == tail) {
        out.erase(out.size() - eof - tail.size(), tail.size());
      } else {
        std::vector<shmetrics::family_snapshot> merged(c->families.begin(),
                                                       c->families.begin() + first_self);
        out.clear();
        if (openmetrics) {
          shmetrics::encode_openmetrics(merged, out, c->labels.get(), &c->columns);
          out += "# EOF\n";
        } else {
          shmetrics::encode_text(merged, out, c->labels.get(), &c->columns);
        }
      }
    }
    last_body_size = out.size() + out.size() / 16;
  }
  return py::bytes(out);
}

// `{a="x",b="y"}` (a rendered label block) -> dict, undoing the value escapes.
void parse_block(std::string_view s, py::dict& d) {
  std::size_t i = 0;
  if (i < s.size() && s[i] == '{') ++i;
  while (i < s.size() && s[i] != '}') {
    std::size_t eq = s.find('=', i);
    if (eq == std::string_view::npos) break;
    std::string name(s.substr(i, eq - i));
    i = eq + 2;  // ="
    std::string v;
    while (i < s.size() && s[i] != '"') {
      if (s[i] == '\\' && i + 1 < s.size()) {
        ++i;
        v += s[i] == 'n' ? '\n' : s[i];
      } else {
        v += s[i];
      }
      ++i;
    }
    ++i;  // closing quote
    if (i < s.size() && s[i] == ',') ++i;
    d[py::str(name)] = py::str(v);
  }
}

py::list collect_samples(const std::string& dir, const std::string& prefix) {
  std::shared_ptr<const shmetrics::collection> c;
  shmetrics::collector& coll = collector_for(dir, prefix);  // the map: under the GIL
  {
    py::gil_scoped_release nogil;
    c = coll.collect();
  }
  py::list out;
  const std::size_t n = merged_count(*c);
  for (std::size_t fi = 0; fi < n; ++fi) {
    const auto& f = c->families[fi];
    const auto& col = c->columns.families[fi];
    const bool have_blocks =
        c->labels && fi < c->labels->families.size() && c->labels->families[fi].size() == col.rows;
    if (!have_blocks) continue;
    const auto& blocks = c->labels->families[fi];
    const std::size_t nb = f.bounds.size() + 1;
    for (std::size_t r = 0; r < col.rows; ++r) {
      const std::size_t from = r == 0 ? 0 : blocks.end[r - 1];
      py::dict labels;
      parse_block(std::string_view(blocks.text).substr(from, blocks.end[r] - from), labels);
      switch (f.type) {
        case metric_type::counter:
          out.append(py::make_tuple(f.name + "_total", labels, col.value[r]));
          break;
        case metric_type::histogram: {
          for (std::size_t b = 0; b < nb; ++b) {
            py::dict l = labels.attr("copy")();
            l["le"] = b + 1 < nb ? shmetrics::format_float(f.bounds[b]) : std::string("+Inf");
            out.append(py::make_tuple(f.name + "_bucket", l,
                                      static_cast<double>(col.buckets[r * nb + b])));
          }
          out.append(py::make_tuple(f.name + "_count", labels,
                                    static_cast<double>(col.buckets[r * nb + nb - 1])));
          out.append(py::make_tuple(f.name + "_sum", labels, col.value[r]));
          break;
        }
        default:
          out.append(py::make_tuple(f.name, labels, col.value[r]));
          break;
      }
    }
  }
  return out;
}

PyObject* family_labels(PyObject* self, PyObject* const* args, Py_ssize_t nargs,
                        PyObject* kwnames) {
  if (kwnames == nullptr) {
    py_family* f = nullptr;
    try {
      f = &py::handle(self).cast<py_family&>();
    } catch (...) {
      f = nullptr;  // not a Family: _labels says so
    }
    bool all_str = f != nullptr;
    for (Py_ssize_t i = 0; all_str && i < nargs; ++i)
      all_str = PyUnicode_CheckExact(args[i]);
    if (all_str) {
      PyObject* key = PyTuple_New(nargs);
      if (!key) return nullptr;
      for (Py_ssize_t i = 0; i < nargs; ++i) {
        Py_INCREF(args[i]);
        PyTuple_SET_ITEM(key, i, args[i]);
      }
      PyObject* hit = PyDict_GetItemWithError(f->children.ptr(), key);
      Py_DECREF(key);
      if (hit) {
        Py_INCREF(hit);
        return hit;
      }
      if (PyErr_Occurred()) return nullptr;
    }
  }
  static PyObject* slow = PyUnicode_InternFromString("_labels");
  const Py_ssize_t nk = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
  std::vector<PyObject*> all(static_cast<std::size_t>(1 + nargs + nk));
  all[0] = self;
  for (Py_ssize_t i = 0; i < nargs + nk; ++i)
    all[static_cast<std::size_t>(1 + i)] = args[i];
  return PyObject_VectorcallMethod(slow, all.data(), static_cast<std::size_t>(1 + nargs), kwnames);
}

PyMethodDef family_labels_def = {
    "labels", as_cfunc(family_labels), METH_FASTCALL | METH_KEYWORDS,
    "labels(*values) or labels(**{name: value}): the child of these label values, created on "
    "the first call and the same object after (cache it)."};

}  // namespace

PYBIND11_MODULE(_shmetrics, m) {
  m.doc() = "shmetrics native module: registries, families and hot-path children (docs/python.md)";

  counter_child_type = make_child_type("shmetrics.CounterChild", counter_methods);
  gauge_child_type = make_child_type("shmetrics.GaugeChild", gauge_methods);
  histogram_child_type = make_child_type("shmetrics.HistogramChild", histogram_methods);
  if (!counter_child_type || !gauge_child_type || !histogram_child_type)
    throw py::error_already_set();
  m.add_object("CounterChild", reinterpret_cast<PyObject*>(counter_child_type));
  m.add_object("GaugeChild", reinterpret_cast<PyObject*>(gauge_child_type));
  m.add_object("HistogramChild", reinterpret_cast<PyObject*>(histogram_child_type));

  error_type = PyErr_NewExceptionWithDoc("shmetrics.Error", "A shmetrics error.",
                                         PyExc_RuntimeError, nullptr);
  segment_full_type = PyErr_NewExceptionWithDoc(
      "shmetrics.SegmentFullError",
      "The segment has no room left (families, series, cells, strings or /dev/shm): raised at "
      "registration or labels(), never on the hot path.",
      error_type, nullptr);
  m.add_object("Error", error_type);
  m.add_object("SegmentFullError", segment_full_type);

  py::class_<py_registry>(m, "Registry")
      .def(py::init([](py::object dir, py::object prefix, py::kwargs opts) {
             return std::make_unique<py_registry>(options_from(dir, prefix, opts));
           }),
           py::arg("dir") = py::none(), py::arg("prefix") = py::none())
      .def_property_readonly("path", [](py_registry& r) { return r.get().path(); })
      .def_property_readonly("options", [](py_registry& r) { return options_dict(r.opt); })
      .def_property_readonly("dir", [](py_registry& r) { return r.opt.dir; })
      .def_property_readonly("prefix", [](py_registry& r) { return r.opt.prefix; })
      .def_property_readonly("closed", [](py_registry& r) { return r.reg == nullptr; })
      .def("close", &py_registry::close,
           "Marks the segment closed and removes it; every child goes inert.")
      .def("usage",
           [](py_registry& r) {
             auto u = r.get().usage();
             py::dict d;
             d["families"] = u.families;
             d["family_capacity"] = u.family_capacity;
             d["series"] = u.series;
             d["series_capacity"] = u.series_capacity;
             d["string_bytes"] = u.string_bytes;
             d["string_capacity"] = u.string_capacity;
             d["cells"] = u.cells;
             d["cell_capacity"] = u.cell_capacity;
             d["registrations_dropped"] = u.registrations_dropped;
             d["series_removed"] = u.series_removed;
             d["segment_bytes"] = r.get().segment_bytes();
             return d;
           })
      .def(
          "counter",
          [](py::object self, const std::string& name, const std::string& documentation,
             py::object labelnames, py::object const_labels) {
            family_def d = family_of(kind::counter, name, documentation, labelnames, const_labels);
            return add_family(self, std::move(d));
          },
          py::arg("name"), py::arg("documentation") = "", py::arg("labelnames") = py::tuple(),
          py::arg("const_labels") = py::none())
      .def(
          "gauge",
          [](py::object self, const std::string& name, const std::string& documentation,
             py::object labelnames, py::object const_labels, const std::string& mode) {
            family_def d = family_of(kind::gauge, name, documentation, labelnames, const_labels);
            d.mode = parse_mode(mode);
            return add_family(self, std::move(d));
          },
          py::arg("name"), py::arg("documentation") = "", py::arg("labelnames") = py::tuple(),
          py::arg("const_labels") = py::none(), py::arg("mode") = "latest")
      .def(
          "histogram",
          [](py::object self, const std::string& name, const std::string& documentation,
             py::object labelnames, py::object buckets, py::object const_labels) {
            family_def d =
                family_of(kind::histogram, name, documentation, labelnames, const_labels);
            for (py::handle b : buckets) {
              double v;
              if (!to_double(b.ptr(), v)) {
                PyErr_Clear();
                throw py::value_error(name + ": bucket " + std::string(py::repr(b)) +
                                      " is not a number (buckets " +
                                      std::string(py::repr(buckets)) + ")");
              }
              d.buckets.push_back(v);
            }
            try {
              return add_family(self, std::move(d));
            } catch (py::value_error& e) {
              throw py::value_error(std::string(e.what()) + " (buckets " +
                                    std::string(py::repr(buckets)) + ")");
            }
          },
          py::arg("name"), py::arg("documentation") = "", py::arg("labelnames") = py::tuple(),
          py::arg("buckets") = py::make_tuple(.005, .01, .025, .05, .075, .1, .25, .5, .75, 1.0,
                                              2.5, 5.0, 7.5, 10.0),
          py::arg("const_labels") = py::none())
      .def(
          "info",
          [](py::object self, const std::string& name, const std::string& documentation,
             py::object labelnames, py::object const_labels) {
            family_def d = family_of(kind::info, name, documentation, labelnames, const_labels);
            return add_family(self, std::move(d));
          },
          py::arg("name"), py::arg("documentation") = "", py::arg("labelnames") = py::tuple(),
          py::arg("const_labels") = py::none())
      .def("process_metrics",
           [](py_registry& r) {
             if (r.pm) return;
             r.pm = std::make_unique<shmetrics::process_metrics>(
                 take(shmetrics::process_metrics::create(r.get())));
             r.pm->sample_every(std::chrono::seconds(1));
           })
      .def(
          "unregister",
          [](py_registry& r, py_family& f) {
            auto it = std::find(r.families.begin(), r.families.end(), &f);
            if (it == r.families.end())
              throw py::value_error("shmetrics: " + f.def.name + " is not registered here");
            if (r.reg) {
              if (f.def.k == kind::counter)
                take(f.cf.clear());
              else if (f.def.k == kind::histogram)
                take(f.hf.clear());
              else
                take(f.gf.clear());
            }
            for (auto [k, v] : f.children)
              reinterpret_cast<child_object*>(v.ptr())->live = false;
            f.children.clear();
            r.families.erase(it);
            f.reg = nullptr;  // labels() on it raises from now on
            py::object keep;  // the registry's reference goes last
            for (auto o = r.family_objs.begin(); o != r.family_objs.end(); ++o)
              if (&o->cast<py_family&>() == &f) {
                keep = std::move(*o);
                r.family_objs.erase(o);
                break;
              }
          },
          "Removes every series of the family from the merged view and forgets the family: "
          "its name may be registered again (with the same definition).")
      .def("families", [](py_registry& r) {
        py::list l;
        for (py_family* f : r.families)
          l.append(f->stored_name());
        return l;
      });

  py::class_<py_family>(m, "Family")
      .def_property_readonly("name", [](py_family& f) { return f.def.name; })
      .def_property_readonly("stored_name", [](py_family& f) { return f.stored_name(); })
      .def_property_readonly("documentation", [](py_family& f) { return f.def.help; })
      .def_property_readonly("type",
                             [](py_family& f) { return shmetrics::detail::type_word(f.def.k); })
      .def_property_readonly("labelnames",
                             [](py_family& f) {
                               py::tuple t(f.def.labelnames.size());
                               for (std::size_t i = 0; i < f.def.labelnames.size(); ++i)
                                 t[i] = py::str(f.def.labelnames[i]);
                               return t;
                             })
      .def_property_readonly("buckets", [](py_family& f) { return f.def.buckets; })
      .def_property_readonly("mode",
                             [](py_family& f) -> py::object {
                               if (f.def.k != kind::gauge) return py::none();
                               return py::str(mode_word(f.def.mode));
                             })
      .def_property_readonly("registry", [](py_family& f) { return f.registry_ref; })
      .def(
          "_labels",
          [](py::object self, py::args args, py::kwargs kw) -> py::object {
            auto& f = self.cast<py_family&>();
            registered(f);
            py::tuple key = label_values(f, "labels", args, kw);
            if (PyObject* hit = PyDict_GetItem(f.children.ptr(), key.ptr()))
              return py::reinterpret_borrow<py::object>(hit);
            py::object ch = make_child(f, self, key);
            f.children[key] = ch;
            return ch;
          },
          "labels() without its fast path: any arguments.")
      .def(
          "remove",
          [](py_family& f, py::args args, py::kwargs kw) {
            py::tuple key = label_values(f, "remove", args, kw);
            std::vector<std::string> own;
            for (py::handle h : key)
              own.push_back(h.cast<std::string>());
            std::vector<std::string_view> v(own.begin(), own.end());
            registered(f);
            bool removed = f.def.k == kind::counter     ? take(f.cf.remove(v))
                           : f.def.k == kind::histogram ? take(f.hf.remove(v))
                                                        : take(f.gf.remove(v));
            if (PyObject* hit = PyDict_GetItem(f.children.ptr(), key.ptr())) {
              reinterpret_cast<child_object*>(hit)->live = false;
              PyDict_DelItem(f.children.ptr(), key.ptr());
            }
            return removed;
          },
          "Removes the series of these label values; True when it existed.")
      .def("clear",
           [](py_family& f) {
             registered(f);
             std::size_t n = f.def.k == kind::counter     ? take(f.cf.clear())
                             : f.def.k == kind::histogram ? take(f.hf.clear())
                                                          : take(f.gf.clear());
             for (auto [k, v] : f.children)
               reinterpret_cast<child_object*>(v.ptr())->live = false;
             f.children.clear();
             return n;
           })
      .def("__repr__", [](py_family& f) {
        return "<shmetrics " + std::string(shmetrics::detail::type_word(f.def.k)) + " family " +
               f.def.name + "(" + join(f.def.labelnames) + ")>";
      });

  // Family.labels: a METH_FASTCALL method in front of _labels (pybind11's *args/**kwargs
  // dispatch costs ~300 ns): label values that are all str and already seen are one dict
  // lookup; anything else goes to _labels.
  {
    py::object fam_cls = m.attr("Family");
    PyObject* descr =
        PyDescr_NewMethod(reinterpret_cast<PyTypeObject*>(fam_cls.ptr()), &family_labels_def);
    if (!descr) throw py::error_already_set();
    fam_cls.attr("labels") = py::reinterpret_steal<py::object>(descr);
  }

  // The same hot path bound with pybind11, for bench/python/bench_python.py only (the
  // figure that chose the C API above: docs/python.md). A copy of the child's handle: valid
  // while the child's registry is open.
  py::class_<shmetrics::counter>(m, "_PybindCounter")
      .def("inc", [](shmetrics::counter& c) { c.inc(); })
      .def("add", [](shmetrics::counter& c, double v) { c.add(v); });
  py::class_<shmetrics::histogram>(m, "_PybindHistogram")
      .def("observe", [](shmetrics::histogram& h, double v) { h.observe(v); });
  m.def("_pybind_handle", [](py::handle child) -> py::object {
    if (Py_TYPE(child.ptr()) == counter_child_type)
      return py::cast(reinterpret_cast<child_object*>(child.ptr())->c);
    if (Py_TYPE(child.ptr()) == histogram_child_type)
      return py::cast(reinterpret_cast<child_object*>(child.ptr())->h);
    throw py::type_error("a CounterChild or HistogramChild");
  });
  m.def("_after_fork_child", &after_fork_child);
  m.def(
      "_options",
      [](py::object dir, py::object prefix, py::kwargs opts) {
        return options_dict(options_from(dir, prefix, opts));
      },
      py::arg("dir") = py::none(), py::arg("prefix") = py::none());
  m.def("_generate_latest", &generate_latest, py::arg("dir"), py::arg("prefix"),
        py::arg("openmetrics") = false, py::arg("self_metrics") = false);
  m.def("_collect_samples", &collect_samples, py::arg("dir"), py::arg("prefix"));

#if SHMETRICS_PY_CATALOG
  // The catalog at `path` (loaded once per path): an entry by exposed name, or with an
  // empty name the list of (name, source, status).
  m.def("_catalog_entry",
        [](const std::string& path, const std::string& name,
           std::uint64_t max_model_len) -> py::object {
          static auto* loaded = new std::map<std::string, std::unique_ptr<shmetrics::catalog>>;
          auto& cat = (*loaded)[path];
          if (!cat) {
            auto c = shmetrics::catalog::load(path);
            if (!c) {
              loaded->erase(path);
              raise(c.error());
            }
            cat = std::make_unique<shmetrics::catalog>(std::move(*c));
          }
          const std::string& origin = path;
          if (name.empty()) {
            py::list l;
            for (auto& f : cat->families())
              l.append(py::make_tuple(
                  f.name, f.source == shmetrics::family_source::omni ? "omni" : "vllm", f.status));
            return l;
          }
          const shmetrics::family_def* f = cat->find_name(name);
          if (!f) return py::none();
          py::dict d;
          d["name"] = f->name;
          d["key"] = f->key;
          d["source"] = f->source == shmetrics::family_source::omni ? "omni" : "vllm";
          d["type"] = shmetrics::detail::type_word(f->type);
          d["help"] = f->help;
          d["labels"] = f->labels;
          d["buckets"] = f->buckets_1_2_5 ? shmetrics::buckets_1_2_5(max_model_len) : f->buckets;
          d["buckets_1_2_5"] = f->buckets_1_2_5;
          d["mode"] = mode_word(f->mode);
          d["status"] = f->status;
          d["when"] = f->when;
          d["deprecated_in"] = f->deprecated_in;
          d["omni_seed_prefix"] = cat->omni_seed_prefix();
          d["omni_upstream_prefix"] = cat->omni_upstream_prefix();
          d["origin"] = origin;
          return d;
        });
  m.attr("HAVE_CATALOG") = true;
#else
  m.attr("HAVE_CATALOG") = false;
#endif
  m.attr("__version__") = SHMETRICS_VERSION_STRING;
  {
    py::object pid = py::module_::import("types").attr("SimpleNamespace")();
    pid_sentinel = pid.inc_ref().ptr();
    m.attr("PID") = pid;
  }
}
