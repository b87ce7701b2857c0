// rnn_forward / rnn_backward: argument checks and dtype dispatch for the recurrent-layer time
// loops of rnn_loop.cpp (one direction of one layer; see kernels.h for the arguments and
// rnn_loop.cpp for the math). Every shape is derived from w_hh (G*H, H) and xg (T, B, G*H),
// and each array is checked against it, so a wrong shape is a ValueError naming the argument.
#include <initializer_list>
#include <new>

#include "cpu/kernels.h"
#include "cpu/rnn.h"

namespace kiln::cpu {
namespace {
using rnn::Mode;

Mode parse_mode(const char* op, const std::string& m) {
  if (m == "rnn_tanh") return Mode::rnn_tanh;
  if (m == "rnn_relu") return Mode::rnn_relu;
  if (m == "lstm") return Mode::lstm;
  if (m == "gru") return Mode::gru;
  fail_value(std::string(op) + ": mode must be 'rnn_tanh', 'rnn_relu', 'lstm' or 'gru', got '" +
             m + "'");
}

std::string dims_str(std::initializer_list<int64_t> d) {
  std::string s = "(";
  int i = 0;
  for (int64_t v : d) s += (i++ ? ", " : "") + std::to_string(v);
  return s + (d.size() == 1 ? ",)" : ")");
}

struct Checker {
  const char* op;
  const Arr& ref;  // the array whose dtype all others must share
  void shape(const Arr& a, const char* name, std::initializer_list<int64_t> d, bool out) const {
    check_same_dtype(ref, a, op, "xg", name);
    if (out) check_output(a, op, name);
    else check_input(a, op, name);
    bool ok = a.ndim() == py::ssize_t(d.size());
    int i = 0;
    for (int64_t v : d) ok = ok && a.shape(i++) == v;
    if (!ok)
      fail_value(std::string(op) + ": " + name + " of shape " + shape_str(a) + " must be " +
                 dims_str(d));
  }
  void opt(const OptArr& a, const char* name, std::initializer_list<int64_t> d, bool out,
           bool wanted, const char* why) const {
    if (a && wanted) return shape(*a, name, d, out);
    if (a && !wanted)
      fail_value(std::string(op) + ": " + name + " must be None " + why + ", got an array of shape " +
                 shape_str(*a));
    if (!a && wanted) fail_value(std::string(op) + ": " + name + " is required " + why);
  }
};

void check_lengths(const char* op, const OptArr& lengths, int64_t B, int64_t T) {
  if (!lengths) return;
  const Arr& l = *lengths;
  if (dtype_of(l) != DType::i64)
    fail_type(std::string(op) + ": " + describe(l, "lengths") + " must be int64");
  check_input(l, op, "lengths");
  if (l.ndim() != 1 || l.shape(0) != B)
    fail_value(std::string(op) + ": lengths of shape " + shape_str(l) + " must be (" +
               std::to_string(B) + ",), one length per sequence");
  const int64_t* p = cdata<int64_t>(l);
  for (int64_t b = 0; b < B; ++b)
    if (p[b] < 0 || p[b] > T)
      fail_index(std::string(op) + ": lengths[" + std::to_string(b) + "] = " +
                 std::to_string(p[b]) + " is out of range [0, " + std::to_string(T) + "]");
}

// The dimensions every argument is checked against.
struct Dims {
  Mode mode;
  int64_t T, B, H, G, D;
};

Dims derive(const char* op, const std::string& mode, const Arr& xg, const Arr& w_hh,
            const Arr& out, int64_t direction) {
  check_float(xg, op, "xg");
  const Mode m = parse_mode(op, mode);
  const int64_t G = rnn::gates_of(m);
  if (w_hh.ndim() != 2 || w_hh.shape(1) < 1 || w_hh.shape(0) != G * w_hh.shape(1))
    fail_value(std::string(op) + ": w_hh of shape " + shape_str(w_hh) + " must be (" +
               std::to_string(G) + "*H, H) with H >= 1 for mode '" + mode + "'");
  const int64_t H = w_hh.shape(1);
  if (xg.ndim() != 3 || xg.shape(2) != G * H)
    fail_value(std::string(op) + ": xg of shape " + shape_str(xg) + " must be (T, B, " +
               std::to_string(G * H) + ") for w_hh of shape " + shape_str(w_hh));
  const int64_t T = xg.shape(0), B = xg.shape(1);
  if (out.ndim() != 3 || out.shape(0) != T || out.shape(1) != B ||
      (out.shape(2) != H && out.shape(2) != 2 * H))
    fail_value(std::string(op) + ": out of shape " + shape_str(out) + " must be (" +
               std::to_string(T) + ", " + std::to_string(B) + ", D*" + std::to_string(H) +
               ") with D = 1 or 2 directions");
  const int64_t D = out.shape(2) / H;
  if (direction < 0 || direction >= D)
    fail_value(std::string(op) + ": direction " + std::to_string(direction) + " must be in [0, " +
               std::to_string(D) + ") for out of shape " + shape_str(out));
  return Dims{m, T, B, H, G, D};
}

template <class T> const T* cptr(const OptArr& a) { return a ? cdata<T>(*a) : nullptr; }
template <class T> T* mptr(const OptArr& a) {
  return a ? static_cast<T*>(const_cast<py::array&>(*a).mutable_data()) : nullptr;
}
}  // namespace

void rnn_forward(const std::string& mode, const Arr& xg, const Arr& w_hh, const OptArr& b_hh,
                 const Arr& h0, const OptArr& c0, const OptArr& lengths, Arr out, Arr h_n,
                 const OptArr& c_n, const OptArr& gates, const OptArr& extra, int64_t direction) {
  const char* op = "rnn_forward";
  const Dims d = derive(op, mode, xg, w_hh, out, direction);
  const Checker ck{op, xg};
  const bool lstm = d.mode == Mode::lstm, saves_extra = gates && d.G > 1;
  ck.shape(xg, "xg", {d.T, d.B, d.G * d.H}, false);
  ck.shape(w_hh, "w_hh", {d.G * d.H, d.H}, false);
  if (b_hh) ck.shape(*b_hh, "b_hh", {d.G * d.H}, false);
  ck.shape(h0, "h0", {d.B, d.H}, false);
  ck.opt(c0, "c0", {d.B, d.H}, false, lstm, "for lstm only");
  check_lengths(op, lengths, d.B, d.T);
  ck.shape(out, "out", {d.T, d.B, d.D * d.H}, true);
  ck.shape(h_n, "h_n", {d.B, d.H}, true);
  ck.opt(c_n, "c_n", {d.B, d.H}, true, lstm, "for lstm only");
  if (gates) ck.shape(*gates, "gates", {d.T, d.B, d.G * d.H}, true);
  ck.opt(extra, "extra", {d.T, d.B, d.H}, true, saves_extra,
         "exactly when gates are saved for lstm or gru");
  dispatch_float(xg, op, "xg", [&](auto tag) {
    using T = decltype(tag);
    rnn::Fwd<T> p{d.mode, cdata<T>(xg), cdata<T>(w_hh), cptr<T>(b_hh), cdata<T>(h0), cptr<T>(c0),
                  lengths ? cdata<int64_t>(*lengths) : nullptr, data<T>(out), data<T>(h_n),
                  mptr<T>(c_n), mptr<T>(gates), mptr<T>(extra), d.T, d.B, d.H, d.D, direction};
    bool oom = false;
    {
      py::gil_scoped_release nogil;
      try {
        rnn::forward(p);
      } catch (const std::bad_alloc&) {
        oom = true;
      }
    }
    if (oom) throw std::bad_alloc();
  });
}

void rnn_backward(const std::string& mode, const OptArr& grad_out, const OptArr& grad_h_n,
                  const OptArr& grad_c_n, const Arr& w_hh, const Arr& h0, const OptArr& c0,
                  const OptArr& lengths, const Arr& out, const Arr& gates, const OptArr& extra,
                  Arr grad_xg, Arr grad_w_hh, const OptArr& grad_b_ih, const OptArr& grad_b_hh,
                  Arr grad_h0, const OptArr& grad_c0, int64_t direction) {
  const char* op = "rnn_backward";
  const Dims d = derive(op, mode, grad_xg, w_hh, out, direction);
  const Checker ck{op, grad_xg};
  const bool lstm = d.mode == Mode::lstm;
  const int64_t GH = d.G * d.H;
  if (grad_out) ck.shape(*grad_out, "grad_out", {d.T, d.B, d.D * d.H}, false);
  if (grad_h_n) ck.shape(*grad_h_n, "grad_h_n", {d.B, d.H}, false);
  if (grad_c_n) ck.opt(grad_c_n, "grad_c_n", {d.B, d.H}, false, lstm, "for lstm only");
  ck.shape(w_hh, "w_hh", {GH, d.H}, false);
  ck.shape(h0, "h0", {d.B, d.H}, false);
  ck.opt(c0, "c0", {d.B, d.H}, false, lstm, "for lstm only");
  check_lengths(op, lengths, d.B, d.T);
  ck.shape(out, "out", {d.T, d.B, d.D * d.H}, false);
  ck.shape(gates, "gates", {d.T, d.B, GH}, false);
  ck.opt(extra, "extra", {d.T, d.B, d.H}, false, d.G > 1, "for lstm and gru only");
  ck.shape(grad_xg, "grad_xg", {d.T, d.B, GH}, true);
  ck.shape(grad_w_hh, "grad_w_hh", {GH, d.H}, true);
  if (grad_b_ih) ck.shape(*grad_b_ih, "grad_b_ih", {GH}, true);
  if (grad_b_hh) ck.shape(*grad_b_hh, "grad_b_hh", {GH}, true);
  ck.shape(grad_h0, "grad_h0", {d.B, d.H}, true);
  if (grad_c0) ck.opt(grad_c0, "grad_c0", {d.B, d.H}, true, lstm, "for lstm only");
  dispatch_float(grad_xg, op, "grad_xg", [&](auto tag) {
    using T = decltype(tag);
    rnn::Bwd<T> p{d.mode, cptr<T>(grad_out), cptr<T>(grad_h_n), cptr<T>(grad_c_n),
                  cdata<T>(w_hh), cdata<T>(h0), cptr<T>(c0),
                  lengths ? cdata<int64_t>(*lengths) : nullptr, cdata<T>(out), cdata<T>(gates),
                  cptr<T>(extra), data<T>(grad_xg), data<T>(grad_w_hh), mptr<T>(grad_b_hh),
                  mptr<T>(grad_b_ih), data<T>(grad_h0), mptr<T>(grad_c0), d.T, d.B, d.H, d.D,
                  direction};
    bool oom = false;
    {
      py::gil_scoped_release nogil;
      try {
        rnn::backward(p);
      } catch (const std::bad_alloc&) {
        oom = true;
      }
    }
    if (oom) throw std::bad_alloc();
  });
}

}  // namespace kiln::cpu
