// Machine blob validation (docs/state_machine.md section 7). Same rules and byte offsets as the
// Python validator, scanned in byte order: the first failure is the one reported.
#include "machine.h"
#include "protocol.h"

static bool is_input_event(uint8_t e) {
  return (e >= EV_LEVER_UP && e <= EV_TUP) || (e >= EV_GTIMER0 && e < EV_GTIMER0 + 4) ||
         (e >= EV_SOFT0 && e < EV_SOFT0 + 8);
}

static uint8_t invalid(uint16_t offset, uint16_t* detail) {
  *detail = offset;
  return ERR_MACHINE_INVALID;
}

uint8_t machine_validate(const uint8_t* b, uint16_t len, uint16_t max_valve_ms, uint16_t* detail) {
  if (len < 32) return invalid(len, detail);
  if (b[0] != 1) return invalid(0, detail);
  uint8_t n_states = b[1], n_trans = b[2];
  if (n_states < 1 || n_states > MAX_STATES) return invalid(1, detail);
  if (n_trans > MAX_TRANSITIONS) return invalid(2, detail);
  if (len != 32 + 18 * (uint16_t)n_states + 2 * (uint16_t)n_trans) return invalid(1, detail);
  if (b[3] >= n_states) return invalid(3, detail);
  if (b[4] & ~0x03) return invalid(4, detail);
  int32_t rest_lo = (int16_t)get_u16(b + 10), rest_hi = (int16_t)get_u16(b + 12);
  uint16_t h = get_u16(b + 14);
  if (rest_lo + (int32_t)h > rest_hi - (int32_t)h) return invalid(10, detail);
  if (h > 32767) return invalid(14, detail);

  uint16_t tbase = 32 + 18 * (uint16_t)n_states;
  uint8_t next_first = 0;
  bool any_terminal = false;
  for (uint8_t s = 0; s < n_states; s++) {
    const uint8_t* r = b + 32 + 18 * (uint16_t)s;
    uint16_t o = 32 + 18 * (uint16_t)s;
    uint8_t flags = r[0], nt = r[17];
    if (flags & ~0x07) return invalid(o, detail);
    if ((flags & 1) && ((flags & 2) || nt)) return invalid(o, detail);
    any_terminal |= flags & 1;
    if (r[1] > 3) return invalid(o + 1, detail);
    if (r[1] == 3) {
      uint16_t ms = get_u16(r + 2);
      if (ms == 0) return invalid(o + 2, detail);
      if (ms > max_valve_ms) {
        *detail = max_valve_ms;
        return ERR_VALVE_CAP;
      }
    }
    if (r[4] > 3) return invalid(o + 4, detail);
    if (r[4] == 1 || r[4] == 3) {
      uint16_t f = get_u16(r + 6);
      if (f < 31 || f > 20000) return invalid(o + 6, detail);
    }
    if (r[4] == 3 && get_u16(r + 8) == 0) return invalid(o + 8, detail);
    if (r[10] & ~r[5]) return invalid(o + 10, detail);
    if (r[16] != next_first || (uint16_t)r[16] + nt > n_trans) return invalid(o + 16, detail);
    next_first += nt;
  }
  if (next_first != n_trans) {
    // The slices do not tile the table: blame the last state's slice.
    return invalid(32 + 18 * (uint16_t)(n_states - 1) + 16, detail);
  }
  for (uint8_t s = 0; s < n_states; s++) {
    const uint8_t* r = b + 32 + 18 * (uint16_t)s;
    uint8_t first = r[16], nt = r[17];
    for (uint8_t j = first; j < first + nt; j++) {
      uint16_t o = tbase + 2 * (uint16_t)j;
      uint8_t ev = b[o], target = b[o + 1];
      if (!is_input_event(ev)) return invalid(o, detail);
      if (ev == EV_TUP && !(r[0] & 2)) return invalid(o, detail);
      for (uint8_t i = first; i < j; i++)
        if (b[tbase + 2 * (uint16_t)i] == ev) return invalid(o, detail);
      if (target >= n_states) return invalid(o + 1, detail);
    }
  }
  if (!any_terminal) return invalid(1, detail);
  return 0;
}
