// Accelerating rotarod firmware (Uno / Mega 2560): exact linear-rpm stepper ramp, up to 5 lanes
// of debounced fall sensors, optional passive-rotation sensors, rod-speed reports at 20 Hz, and
// a host-silence stop (a turning rod stops when the host has sent nothing for host_timeout_ms).
// Wire protocol v1 (docs/protocol.md) with the rotarod packet types of docs/rotarod.md.
// link.* and protocol.h are copies of the lever board's (the Arduino IDE compiles only the
// sketch folder); rod.* is the real-time core.
#include "link.h"
#include "protocol.h"
#include "rod.h"

#define FW_MAJOR 1
#define FW_MINOR 1  // 1.1: SET_CONFIG host_timeout_ms, ROD_STOPPED reason 2
#define FW_PATCH 0

// rotarod packet types (docs/rotarod.md)
enum : uint8_t {
  CMD_ROD_CONFIG = 0x40,
  CMD_START_RAMP = 0x41,
  CMD_STOP_ROD = 0x42,
  PKT_ROD_STARTED = 0x50,
  PKT_ROD_SPEED = 0x51,
  PKT_LANE_FALL = 0x52,
  PKT_PASSIVE_ROTATION = 0x53,
  PKT_ROD_STOPPED = 0x54,
};

static uint32_t ramp_count;
static uint64_t next_heartbeat_us = 100000;
static uint32_t start_mrpm, end_mrpm, ramp_ms, max_ms;

// Host silence (docs/rotarod.md): SET_CONFIG's host_timeout_ms, as on the lever board. Off at
// boot, unlike the lever board's 2000 ms: a 1.0 host never sends it nor heartbeats, and the
// version rules promise that host a 1.x board it can still run; our host turns it on at connect.
static uint16_t host_timeout_ms;
static uint64_t last_host_us;  // when the last valid host packet was handled
static bool host_timed_out;    // HEARTBEAT status bit3, until the next valid host packet

static void send_hello() {
  static const char name[] = "rotarod";
  uint8_t b[22 + sizeof(name) - 1] = {0};
  b[0] = PROTOCOL_VERSION;
  b[1] = FW_MAJOR;
  b[2] = FW_MINOR;
  b[3] = FW_PATCH;
#if defined(__AVR_ATmega2560__)
  b[4] = 2;
#else
  b[4] = 1;
#endif
  // flags 0, uid 0; lever fields 0; n_digital_in = 5 fall + 5 passive inputs
  b[12] = 2 * ROD_MAX_LANES;
  put_u16(b + 18, (uint16_t)(1000000UL / ROD_TICK_HZ));  // tick period, us
  b[20] = MAX_PACKET;
  for (uint8_t i = 0; i < sizeof(name) - 1; i++) b[22 + i] = name[i];
  link_send(PKT_HELLO, b, sizeof b);
}

static void ack(uint8_t seq, uint8_t type) {
  uint8_t b[2] = {seq, type};
  link_send(PKT_ACK, b, 2);
}

static void nak(uint8_t seq, uint8_t type, uint8_t err, uint16_t detail) {
  uint8_t b[5] = {seq, type, err, 0, 0};
  put_u16(b + 3, detail);
  link_send(PKT_NAK, b, 5);
}

static bool length_ok(uint8_t seq, uint8_t type, uint8_t n, uint8_t want) {
  if (n == want) return true;
  nak(seq, type, ERR_BAD_LENGTH, want);
  return false;
}

static void on_packet(uint8_t type, uint8_t seq, const uint8_t *body, uint8_t n) {
  // any valid packet proves the host alive, whatever it asks (docs/protocol.md section 4)
  last_host_us = rod_now_us();
  host_timed_out = false;
  switch (type) {
    case CMD_GET_HELLO:
      if (!length_ok(seq, type, n, 1)) return;
      if (body[0] != PROTOCOL_VERSION) {
        nak(seq, type, ERR_VERSION, PROTOCOL_VERSION);
        return;
      }
      send_hello();
      ack(seq, type);
      return;
    case CMD_HOST_HEARTBEAT:
      if (length_ok(seq, type, n, 0)) ack(seq, type);
      return;
    case CMD_SET_CONFIG: {
      // max_valve_ms:u16 (ignored: the rod has no valve), host_timeout_ms:u16
      if (!length_ok(seq, type, n, 4)) return;
      uint16_t t = get_u16(body + 2);
      if (t != 0 && (t < 100 || t > 60000)) {
        nak(seq, type, ERR_BAD_VALUE, 2);
        return;
      }
      host_timeout_ms = t;
      ack(seq, type);
      return;
    }
    case CMD_RESET_SAFE:
    case CMD_STOP_ROD:
      if (!length_ok(seq, type, n, 0)) return;
      rod_stop(ROD_STOP_HOST);
      ack(seq, type);
      return;
    case CMD_ROD_CONFIG: {
      if (!length_ok(seq, type, n, 8)) return;
      RodConfig c;
      c.steps_per_rev = get_u16(body);
      c.n_lanes = body[2];
      c.debounce_ms = get_u16(body + 3);
      c.active_low_mask = body[5];
      c.passive_mask = body[6];
      c.passive_active_low_mask = body[7];
      if (rod_running()) {
        nak(seq, type, ERR_BUSY, 0);
        return;
      }
      uint8_t err = rod_configure(&c);
      if (err) {
        // byte offset of the offending field
        uint16_t off = c.steps_per_rev == 0 ? 0 : (c.n_lanes == 0 || c.n_lanes > ROD_MAX_LANES) ? 2 : 3;
        nak(seq, type, ERR_BAD_VALUE, off);
        return;
      }
      ack(seq, type);
      return;
    }
    case CMD_START_RAMP: {
      if (!length_ok(seq, type, n, 16)) return;
      uint32_t s0 = get_u32(body), s1 = get_u32(body + 4), r = get_u32(body + 8), m = get_u32(body + 12);
      uint8_t err = rod_start(s0, s1, r, m);
      if (err == ROD_ERR_RUNNING) {
        nak(seq, type, ERR_BUSY, 0);
      } else if (err == ROD_ERR_TOO_FAST) {
        nak(seq, type, ERR_BAD_VALUE, 4);  // end_mrpm
      } else if (err) {
        uint16_t off = s1 < s0 ? 4 : (r == 0 || r > 3600000UL) ? 8 : 12;
        nak(seq, type, ERR_BAD_VALUE, off);
      } else {
        start_mrpm = s0;
        end_mrpm = s1;
        ramp_ms = r;
        max_ms = m;
        ramp_count++;
        ack(seq, type);
      }
      return;
    }
    default:
      nak(seq, type, ERR_UNKNOWN_TYPE, 0);
  }
}

static void send_speed_fields(uint8_t *b, const RodSpeed *sp) {
  put_u32(b, sp->steps);
  put_u32(b + 4, rod_measured_mrpm(sp));
  put_u32(b + 8, rod_nominal_mrpm(sp->tick));
}

static void send_events() {
  uint64_t t;
  if (rod_take_started(&t)) {
    uint8_t b[24];
    put_u64(b, t);
    put_u32(b + 8, start_mrpm);
    put_u32(b + 12, end_mrpm);
    put_u32(b + 16, ramp_ms);
    put_u32(b + 20, max_ms);
    link_send(PKT_ROD_STARTED, b, sizeof b);
  }
  RodHit h;
  while (rod_take_hit(&h)) {
    uint8_t b[21];
    put_u64(b, h.t_us);
    b[8] = h.lane;
    send_speed_fields(b + 9, &h.speed);
    link_send(h.kind == 0 ? PKT_LANE_FALL : PKT_PASSIVE_ROTATION, b, sizeof b);
  }
  RodReport r;
  if (rod_take_report(&r)) {
    uint8_t b[20];
    put_u64(b, r.t_us);
    send_speed_fields(b + 8, &r.speed);
    link_send(PKT_ROD_SPEED, b, sizeof b, true);  // a late speed report may be dropped
  }
  uint32_t steps;
  uint8_t reason;
  if (rod_take_ended(&t, &steps, &reason)) {
    uint8_t b[13];
    put_u64(b, t);
    put_u32(b + 8, steps);
    b[12] = reason;
    link_send(PKT_ROD_STOPPED, b, sizeof b);
  }
  // status before time: "still" read before `now` means still at `now` (the ISR may end the
  // ramp between the two reads; the other order could report a stopped rod too early)
  bool turning = rod_running();
  uint64_t now = rod_now_us();
  if (now >= next_heartbeat_us) {
    next_heartbeat_us += 100000;
    uint8_t b[28] = {0};
    put_u64(b, now);
    put_u16(b + 8, link_counters.crc_errors);
    put_u16(b + 10, link_counters.cobs_errors);
    put_u16(b + 12, link_counters.lost);
    put_u16(b + 14, link_counters.tx_dropped);
    put_u16(b + 16, rod_tick_overruns() + rod_late_steps());
    b[18] = (turning ? 1 : 0) | (host_timed_out ? 8 : 0);
    put_u32(b + 19, ramp_count);
    b[23] = 0xFF;
    link_send(PKT_HEARTBEAT, b, sizeof b, true);
  }
}

void setup() {
  link_begin(1000000);
  rod_init();
  send_hello();
}

// The host has been silent too long: stop a turning rod as STOP_ROD would (at once; the stepper
// holds), with reason ROD_STOP_HOST_SILENT in ROD_STOPPED. Judged here, not in the tick: the
// loop comes round within a packet's send time, and the tick has no cycles to spare.
static void check_host_silence() {
  if (host_timeout_ms == 0 || host_timed_out) return;
  if (rod_now_us() - last_host_us <= (uint64_t)host_timeout_ms * 1000) return;
  host_timed_out = true;
  rod_stop(ROD_STOP_HOST_SILENT);
}

void loop() {
  rod_service();
  link_poll(on_packet);
  check_host_silence();
  send_events();
}
