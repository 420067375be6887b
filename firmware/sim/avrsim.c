/*
 * avrsim: firmware-in-the-loop harness on libsimavr.
 *
 * Runs a compiled sketch (.elf), bridges its UART0 to a pseudo-terminal with a large buffer of its
 * own (the stock uart_pty part delivers only 12-22 kB/s), drives ADC voltages and input pins from a
 * script file and/or commands on stdin, and writes a cycle-exact log of every UART byte in both
 * directions, every applied input and every edge of the watched pins. Times in the log are CPU
 * cycles since reset, so timing is judged in simulated time whatever the host load.
 *
 * Usage: avrsim --elf F [--mcu atmega328p] [--freq 16000000] [--vcc-mv 5120] [--log F]
 *               [--watch B5,D3,C ...] [--script F] [--realtime] [--stepped] [--no-pty]
 *               [--pty-drop] [--max-us N]
 *
 * Commands (script lines and stdin lines; '#' starts a comment). An optional time prefix schedules
 * the command: "@<us>" at absolute simulated µs, "+<us>" relative to the current simulated time.
 *   adc <channel> <millivolts>   set an ADC input voltage
 *   pin <port><bit> <0|1>        drive an input pin, e.g. "pin D2 1"
 *   run <us>                     (stepped mode) advance <us> simulated µs, then answer "ok <cycle>"
 *   tx <hex bytes>               bytes for the board's UART receiver (no spaces: "tx 0a0b00"); they
 *                                enter at the command's time, so stepped runs are deterministic
 *   sync                         answer "ok <cycle>" once every earlier command has been applied
 *   quit                         flush the log and exit
 * stdout lines: "pty <path>" once at start, "ok <cycle>" answers, "exit <reason> <cycle>" at the end.
 * Log lines: "U <cycle> <hex>" board->host byte, "R <cycle> <hex>" host->board byte,
 *            "P <cycle> <port><bit> <0|1>" watched pin edge, "I <cycle> <command>" applied input.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <avr_adc.h>
#include <avr_ioport.h>
#include <avr_uart.h>
#include <sim_avr.h>
#include <sim_elf.h>
#include <sim_irq.h>

#define OUTBUF_BYTES (1u << 22)
#define INBUF_BYTES 4096
#define PUMP_CYCLES 800 /* host I/O is serviced every 50 µs of simulated time at 16 MHz */

typedef struct {
	uint64_t cycle;
	char text[600];
} timed_cmd_t;

static avr_t *avr;
static FILE *logf;
static int pty_master = -1, pty_slave = -1;
static int pty_drop;
static uint64_t dropped_bytes;
static uint8_t *outbuf;
static size_t out_head, out_len;
static uint8_t inbuf[INBUF_BYTES];
static size_t in_head, in_len;
static int uart_xon = 1;
static timed_cmd_t *queue;
static size_t queue_len, queue_cap, queue_next;
static volatile sig_atomic_t stop_requested;
static int stepped;
static uint64_t run_target;
static int running; /* stepped mode: a 'run' is in progress */
static int want_quit;
static uint8_t pin_state[26][8];

static uint64_t us_to_cycles(double us) { return (uint64_t)(us * (avr->frequency / 1e6) + 0.5); }

static void die(const char *msg) {
	fprintf(stderr, "avrsim: %s\n", msg);
	exit(2);
}

/* ------------------------------------------------------------------ UART bridge */
static void uart_out_cb(struct avr_irq_t *irq, uint32_t value, void *param) {
	(void)irq;
	(void)param;
	fprintf(logf, "U %llu %02x\n", (unsigned long long)avr->cycle, value & 0xff);
	if (pty_master < 0) return;
	if (out_len == OUTBUF_BYTES) {
		dropped_bytes++;
		return;
	}
	outbuf[(out_head + out_len) % OUTBUF_BYTES] = (uint8_t)value;
	out_len++;
}

static void uart_xon_cb(struct avr_irq_t *irq, uint32_t value, void *param) {
	(void)irq; (void)value; (void)param;
	uart_xon = 1;
}

static void uart_xoff_cb(struct avr_irq_t *irq, uint32_t value, void *param) {
	(void)irq; (void)value; (void)param;
	uart_xon = 0;
}

/* Write what the pty takes now; with block=1 wait until everything is written (back-pressure:
 * simulated time does not advance while the host is not reading, so nothing is lost). */
static void flush_out(int block) {
	while (out_len) {
		size_t chunk = out_len;
		if (out_head + chunk > OUTBUF_BYTES) chunk = OUTBUF_BYTES - out_head;
		ssize_t n = write(pty_master, outbuf + out_head, chunk);
		if (n > 0) {
			out_head = (out_head + (size_t)n) % OUTBUF_BYTES;
			out_len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR) die("write to pty failed");
		if (!block || stop_requested) return;
		struct pollfd p = {.fd = pty_master, .events = POLLOUT};
		poll(&p, 1, 100);
	}
}

static void pump_uart(void) {
	if (pty_master >= 0 && in_len < INBUF_BYTES) {
		size_t tail = (in_head + in_len) % INBUF_BYTES;
		size_t room = INBUF_BYTES - in_len;
		if (tail + room > INBUF_BYTES) room = INBUF_BYTES - tail;
		ssize_t n = read(pty_master, inbuf + tail, room);
		if (n > 0) in_len += (size_t)n;
	}
	if (pty_master >= 0 && out_len) {
		if (pty_drop) {
			flush_out(0);
		} else {
			/* keep the pty moving; block only when our own 4 MiB buffer is nearly full */
			flush_out(out_len > OUTBUF_BYTES - 4096);
		}
	}
}

/* simavr 1.6 times a UART byte as if U2X were off and a parity bit were sent, i.e. 2.2x too slow
 * for 8N1 at 1 Mbaud with U2X. Recompute the byte time from the registers the sketch wrote, as
 * the real USART does, so throughput is judged against the real wire speed. */
static avr_uart_t *uart0;
static uint64_t next_rx_cycle;

static avr_uart_t *find_uart0(void) {
	for (avr_io_t *io = avr->io_port; io; io = io->next)
		if (io->kind && !strcmp(io->kind, "uart") && ((avr_uart_t *)io)->name == '0')
			return (avr_uart_t *)io;
	return NULL;
}

static avr_cycle_count_t uart_cycles_per_byte(void) {
	uint16_t ubrr = avr_regbit_get(avr, uart0->ubrrl) | (avr_regbit_get(avr, uart0->ubrrh) << 8);
	avr_cycle_count_t per_bit = (avr_regbit_get(avr, uart0->u2x) ? 8 : 16) * (ubrr + 1);
	uint8_t ucsrc = avr->data[uart0->r_ucsrc];
	int data_bits = 5 + ((ucsrc >> 1) & 3) + (avr_regbit_get(avr, uart0->ucsz2) ? 4 : 0);
	if (data_bits > 9) data_bits = 9;
	int parity = (ucsrc >> 4) & 3 ? 1 : 0;
	int stop = (ucsrc >> 3) & 1 ? 2 : 1;
	return per_bit * (avr_cycle_count_t)(1 + data_bits + parity + stop);
}

/* One byte into the receiver per byte time, once the sketch has enabled it: the simulated
 * receive FIFO then never overflows and the board sees the real wire pacing. */
static void feed_uart(avr_irq_t *in_irq) {
	if (!uart0 || !avr_regbit_get(avr, uart0->rxen) || !uart_xon) return;
	avr_cycle_count_t per_byte = uart_cycles_per_byte();
	if (uart0->cycles_per_byte != per_byte) uart0->cycles_per_byte = per_byte;
	uint8_t b = inbuf[in_head];
	in_head = (in_head + 1) % INBUF_BYTES;
	in_len--;
	fprintf(logf, "R %llu %02x\n", (unsigned long long)avr->cycle, b);
	avr_raise_irq(in_irq, b);
	next_rx_cycle = avr->cycle + per_byte + 1;
}

/* ------------------------------------------------------------------ pins */
static void pin_cb(struct avr_irq_t *irq, uint32_t value, void *param) {
	(void)irq;
	int port = (int)((intptr_t)param >> 8), bit = (int)((intptr_t)param & 0xff);
	uint8_t v = value ? 1 : 0;
	if (pin_state[port][bit] == v) return;
	pin_state[port][bit] = v;
	fprintf(logf, "P %llu %c%d %d\n", (unsigned long long)avr->cycle, 'A' + port, bit, v);
}

static void watch_pin(char port, int bit) {
	avr_irq_t *irq = avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ(port), bit);
	if (!irq) {
		fprintf(stderr, "avrsim: no port %c on this MCU\n", port);
		exit(2);
	}
	avr_irq_register_notify(irq, pin_cb, (void *)(intptr_t)(((port - 'A') << 8) | bit));
}

static void watch_spec(const char *spec) {
	char *copy = strdup(spec), *save = NULL;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char port = (char)toupper((unsigned char)tok[0]);
		if (port < 'A' || port > 'L') {
			fprintf(stderr, "avrsim: --watch %s: expected <port letter>[bit], e.g. B5 or D\n", tok);
			exit(2);
		}
		if (tok[1] == 0) {
			for (int b = 0; b < 8; b++) watch_pin(port, b);
		} else {
			int bit = atoi(tok + 1);
			if (bit < 0 || bit > 7) die("--watch: bit must be 0..7");
			watch_pin(port, bit);
		}
	}
	free(copy);
}

/* ------------------------------------------------------------------ commands */
static void queue_push(uint64_t cycle, const char *text) {
	if (queue_len == queue_cap) {
		queue_cap = queue_cap ? queue_cap * 2 : 1024;
		queue = realloc(queue, queue_cap * sizeof *queue);
		if (!queue) die("out of memory");
	}
	/* Sorted insert from the back (scripts arrive mostly in time order); equal times keep arrival
	 * order, and nothing lands before queue_next because nothing is scheduled in the past. */
	size_t i = queue_len;
	while (i > 0 && queue[i - 1].cycle > cycle) i--;
	memmove(&queue[i + 1], &queue[i], (queue_len - i) * sizeof *queue);
	queue[i].cycle = cycle;
	snprintf(queue[i].text, sizeof queue[i].text, "%s", text);
	queue_len++;
}


static void apply(const char *cmd, const char *where) {
	char name[16];
	if (sscanf(cmd, "%15s", name) != 1) return;
	if (!strcmp(name, "adc")) {
		int ch, mv;
		if (sscanf(cmd, "%*s %d %d", &ch, &mv) != 2 || ch < 0 || ch > 15 || mv < 0) {
			fprintf(stderr, "avrsim: %s: bad adc command '%s' (expected: adc <0-15> <mV>)\n",
			        where, cmd);
			return;
		}
		avr_raise_irq(avr_io_getirq(avr, AVR_IOCTL_ADC_GETIRQ, ADC_IRQ_ADC0 + ch), (uint32_t)mv);
	} else if (!strcmp(name, "tx")) {
		const char *h = cmd + 2;
		while (*h == ' ') h++;
		size_t n = strlen(h);
		if (n % 2 || n / 2 > INBUF_BYTES - in_len) {
			fprintf(stderr, "avrsim: %s: bad or too long tx command\n", where);
			return;
		}
		for (size_t i = 0; i < n; i += 2) {
			unsigned v;
			if (sscanf(h + i, "%2x", &v) != 1) {
				fprintf(stderr, "avrsim: %s: bad hex in tx command\n", where);
				return;
			}
			inbuf[(in_head + in_len++) % INBUF_BYTES] = (uint8_t)v;
		}
		return; /* each byte is logged as an R line when it enters the UART */
	} else if (!strcmp(name, "pin")) {
		char port;
		int bit, v;
		if (sscanf(cmd, "%*s %c%d %d", &port, &bit, &v) != 3 || bit < 0 || bit > 7) {
			fprintf(stderr, "avrsim: %s: bad pin command '%s' (expected: pin D2 1)\n", where, cmd);
			return;
		}
		port = (char)toupper((unsigned char)port);
		avr_irq_t *irq = avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ(port), bit);
		if (!irq) {
			fprintf(stderr, "avrsim: %s: no port %c\n", where, port);
			return;
		}
		avr_raise_irq(irq, v ? 1 : 0);
	} else {
		fprintf(stderr, "avrsim: %s: unknown command '%s'\n", where, cmd);
		return;
	}
	fprintf(logf, "I %llu %s\n", (unsigned long long)avr->cycle, cmd);
}

static void handle_line(char *line, const char *where) {
	char *hash = strchr(line, '#');
	if (hash) *hash = 0;
	while (*line && isspace((unsigned char)*line)) line++;
	size_t n = strlen(line);
	while (n && isspace((unsigned char)line[n - 1])) line[--n] = 0;
	if (!n) return;
	if (line[0] == '@' || line[0] == '+') {
		char *rest;
		double us = strtod(line + 1, &rest);
		while (*rest && isspace((unsigned char)*rest)) rest++;
		uint64_t at = us_to_cycles(us) + (line[0] == '+' ? avr->cycle : 0);
		if (at < avr->cycle) at = avr->cycle;
		queue_push(at, rest);
		return;
	}
	if (!strncmp(line, "run", 3)) {
		double us = atof(line + 3);
		run_target = avr->cycle + us_to_cycles(us);
		running = 1;
	} else if (!strcmp(line, "sync")) {
		queue_push(avr->cycle, "__sync");
	} else if (!strcmp(line, "quit")) {
		want_quit = 1;
	} else {
		queue_push(avr->cycle, line);
	}
}

static void run_queue(void) {
	while (queue_next < queue_len && queue[queue_next].cycle <= avr->cycle) {
		const char *t = queue[queue_next].text;
		if (!strcmp(t, "__sync")) {
			printf("ok %llu\n", (unsigned long long)avr->cycle);
			fflush(stdout);
		} else {
			apply(t, "command");
		}
		queue_next++;
	}
	if (queue_next == queue_len) queue_next = queue_len = 0;
}

static char stdin_buf[1 << 20];
static size_t stdin_len;
static int stdin_open = 1;

/* Act on the complete lines buffered from stdin; in stepped mode stop after a "run" so the
 * lines after it wait until that run is over. */
static void process_lines(void) {
	char *start = stdin_buf, *nl;
	while (!(stepped && running) && !want_quit &&
	       (nl = memchr(start, '\n', stdin_len - (size_t)(start - stdin_buf)))) {
		*nl = 0;
		handle_line(start, "stdin");
		start = nl + 1;
	}
	stdin_len -= (size_t)(start - stdin_buf);
	memmove(stdin_buf, start, stdin_len);
}

/* Read whatever stdin has (blocking up to 200 ms if block), and act on complete lines. */
static void read_stdin(int block) {
	process_lines();
	if (!stdin_open || (stepped && running) || memchr(stdin_buf, '\n', stdin_len)) return;
	struct pollfd p = {.fd = 0, .events = POLLIN};
	if (poll(&p, 1, block ? 200 : 0) <= 0) return;
	ssize_t n = read(0, stdin_buf + stdin_len, sizeof stdin_buf - 1 - stdin_len);
	if (n <= 0) {
		stdin_open = 0;
		if (stepped) want_quit = 1;
		return;
	}
	stdin_len += (size_t)n;
	if (stdin_len == sizeof stdin_buf - 1 && !memchr(stdin_buf, '\n', stdin_len))
		die("stdin line too long");
	process_lines();
}

static void load_script(const char *path) {
	FILE *f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "avrsim: cannot open script %s: %s\n", path, strerror(errno));
		exit(2);
	}
	char line[700], where[800];
	int lineno = 0;
	while (fgets(line, sizeof line, f)) {
		snprintf(where, sizeof where, "%s:%d", path, ++lineno);
		handle_line(line, where);
	}
	fclose(f);
}

/* ------------------------------------------------------------------ exact wake-ups */
/* A sleeping AVR lets simavr jump straight to its next cycle timer, which would apply a timed
 * input (or end a stepped run) late. Keep one cycle timer armed at the next cycle the harness
 * must act on, so the jump stops there. */
static avr_cycle_count_t armed_cycle;

static avr_cycle_count_t wake_cb(struct avr_t *a, avr_cycle_count_t when, void *param) {
	(void)when; (void)param;
	/* Fire again next cycle until the main loop has acted (arm_wake then cancels us): when the
	 * instruction that reaches the wanted cycle is the `sleep`, simavr runs the due timers and
	 * then jumps straight to the next timer, so a one-shot wake-up would be jumped over and the
	 * input applied late (seen: 510 cycles). */
	armed_cycle = a->cycle + 1;
	return armed_cycle;
}

static void arm_wake(void) {
	avr_cycle_count_t want = UINT64_MAX;
	if (queue_next < queue_len) want = queue[queue_next].cycle;
	if (stepped && running && run_target < want) want = run_target;
	if (in_len && next_rx_cycle < want) want = next_rx_cycle;
	if (want == UINT64_MAX || want <= avr->cycle || want == armed_cycle) return;
	if (armed_cycle) avr_cycle_timer_cancel(avr, wake_cb, NULL);
	armed_cycle = want;
	avr_cycle_timer_register(avr, want - avr->cycle, wake_cb, NULL);
}

/* ------------------------------------------------------------------ main */
static void on_signal(int sig) {
	(void)sig;
	stop_requested = 1;
}

static void no_sleep(avr_t *a, avr_cycle_count_t how_long) {
	(void)a; (void)how_long; /* throttling is ours; never let simavr usleep() */
}

/* simavr logs to stdout, which carries our answers: send its messages to stderr instead */
static void stderr_logger(avr_t *a, const int level, const char *fmt, va_list ap) {
	(void)a;
	if (level <= LOG_WARNING) vfprintf(stderr, fmt, ap);
}

static double now_s(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
	const char *elf = NULL, *mcu = "atmega328p", *log_path = "/dev/null", *script = NULL;
	const char *watch[32];
	int n_watch = 0, realtime = 0, use_pty = 1;
	unsigned long freq = 16000000, vcc_mv = 5000;
	double max_us = 0;
	static struct option opts[] = {
	    {"elf", 1, 0, 'e'},    {"mcu", 1, 0, 'm'},     {"freq", 1, 0, 'f'},
	    {"vcc-mv", 1, 0, 'v'}, {"log", 1, 0, 'l'},     {"watch", 1, 0, 'w'},
	    {"script", 1, 0, 's'}, {"realtime", 0, 0, 'r'}, {"stepped", 0, 0, 'S'},
	    {"no-pty", 0, 0, 'n'}, {"pty-drop", 0, 0, 'd'}, {"max-us", 1, 0, 'x'},
	    {0, 0, 0, 0}};
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'e': elf = optarg; break;
		case 'm': mcu = optarg; break;
		case 'f': freq = strtoul(optarg, NULL, 10); break;
		case 'v': vcc_mv = strtoul(optarg, NULL, 10); break;
		case 'l': log_path = optarg; break;
		case 'w': if (n_watch < 32) watch[n_watch++] = optarg; break;
		case 's': script = optarg; break;
		case 'r': realtime = 1; break;
		case 'S': stepped = 1; break;
		case 'n': use_pty = 0; break;
		case 'd': pty_drop = 1; break;
		case 'x': max_us = atof(optarg); break;
		default: fprintf(stderr, "usage: see the comment at the top of avrsim.c\n"); return 2;
		}
	}
	if (!elf) die("--elf is required");

	avr_global_logger_set(stderr_logger);
	elf_firmware_t fw;
	memset(&fw, 0, sizeof fw);
	if (elf_read_firmware(elf, &fw) != 0) {
		fprintf(stderr, "avrsim: cannot read firmware %s\n", elf);
		return 2;
	}
	avr = avr_make_mcu_by_name(mcu);
	if (!avr) {
		fprintf(stderr, "avrsim: unknown mcu %s\n", mcu);
		return 2;
	}
	avr_init(avr);
	avr_load_firmware(avr, &fw);
	avr->frequency = (uint32_t)freq;
	/* ADC inputs are millivolts against the reference: set them explicitly */
	avr->vcc = avr->avcc = avr->aref = (uint32_t)vcc_mv;
	avr->sleep = no_sleep;
	avr->log = 0;

	logf = fopen(log_path, "w");
	if (!logf) die("cannot open --log file");
	setvbuf(logf, NULL, _IOFBF, 1 << 20);
	fprintf(logf, "# avrsim mcu=%s freq_hz=%lu vcc_mv=%lu elf=%s\n", mcu, freq, vcc_mv, elf);

	/* the stock UART flags make simavr usleep() when the sketch polls an empty UART and echo
	 * to stdout; neither belongs in a timing harness */
	uint32_t flags = 0;
	avr_ioctl(avr, AVR_IOCTL_UART_GET_FLAGS('0'), &flags);
	flags &= ~(uint32_t)(AVR_UART_FLAG_POLL_SLEEP | AVR_UART_FLAG_STDIO);
	avr_ioctl(avr, AVR_IOCTL_UART_SET_FLAGS('0'), &flags);
	avr_irq_t *uart_in = avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_INPUT);
	avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUTPUT),
	                        uart_out_cb, NULL);
	avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XON),
	                        uart_xon_cb, NULL);
	avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XOFF),
	                        uart_xoff_cb, NULL);
	for (int i = 0; i < n_watch; i++) watch_spec(watch[i]);
	uart0 = find_uart0();
	if (!uart0) die("this MCU has no UART0");

	if (use_pty) {
		char name[256];
		if (openpty(&pty_master, &pty_slave, name, NULL, NULL) != 0) die("openpty failed");
		struct termios tio;
		tcgetattr(pty_slave, &tio);
		cfmakeraw(&tio);
		tcsetattr(pty_slave, TCSANOW, &tio);
		fcntl(pty_master, F_SETFL, fcntl(pty_master, F_GETFL) | O_NONBLOCK);
		outbuf = malloc(OUTBUF_BYTES);
		if (!outbuf) die("out of memory");
		/* pty_slave stays open so the pty survives the host closing and reopening it */
		printf("pty %s\n", name);
	} else {
		printf("pty none\n");
	}
	fflush(stdout);

	if (script) load_script(script);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);
	if (!stepped) fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);

	uint64_t max_cycles = max_us > 0 ? us_to_cycles(max_us) : UINT64_MAX;
	uint64_t next_pump = 0;
	uint16_t min_sp = 0xffff;
	uint64_t awake_cycles = 0, n_steps = 0;
	double wall0 = now_s();
	const char *reason = "quit";
	int state = cpu_Running;
	for (;;) {
		if (stop_requested) { reason = "signal"; break; }
		if (want_quit) break;
		if (avr->cycle >= max_cycles) { reason = "max-us"; break; }
		if (stepped && running && avr->cycle >= run_target) {
			running = 0;
			run_queue();
			pump_uart();
			flush_out(1);
			fflush(logf);
			printf("ok %llu\n", (unsigned long long)avr->cycle);
			fflush(stdout);
		}
		if (stepped && !running) {
			read_stdin(1);
			run_queue(); /* sync and immediate commands while paused */
			pump_uart();
			continue;
		}
		if (queue_next < queue_len && queue[queue_next].cycle <= avr->cycle) run_queue();
		if (avr->cycle >= next_pump) {
			next_pump = avr->cycle + PUMP_CYCLES;
			/* the TX side: keep simavr's byte time right even before any input arrives */
			if (uart0->cycles_per_byte != uart_cycles_per_byte() && avr_regbit_get(avr, uart0->txen))
				uart0->cycles_per_byte = uart_cycles_per_byte();
			pump_uart();
			if (!stepped) read_stdin(0);
			if (realtime) {
				double ahead = (double)avr->cycle / avr->frequency - (now_s() - wall0);
				if (ahead > 0.002) {
					struct timespec ts = {0, (long)(ahead * 1e9)};
					nanosleep(&ts, NULL);
				}
			}
		}
		if (in_len && avr->cycle >= next_rx_cycle) feed_uart(uart_in);
		arm_wake();
		uint64_t before = avr->cycle;
		int was_sleeping = avr->state == cpu_Sleeping;
		state = avr_run(avr);
		if (!was_sleeping) awake_cycles += avr->cycle - before;
		n_steps++;
		/* lowest stack pointer seen: the stack margin check needs it (an Uno has 2 KB of RAM) */
		uint16_t sp = avr->data[0x5d] | (avr->data[0x5e] << 8);
		if (sp < min_sp && avr->cycle > 1000) min_sp = sp;
		if (state == cpu_Done || state == cpu_Crashed) {
			reason = state == cpu_Done ? "done" : "crashed";
			break;
		}
	}
	if (pty_master >= 0 && !stop_requested) flush_out(0);
	fprintf(logf, "# awake_cycles=%llu steps=%llu\n", (unsigned long long)awake_cycles, (unsigned long long)n_steps);
	fprintf(logf, "# end reason=%s cycle=%llu dropped=%llu min_sp=%u\n", reason,
	        (unsigned long long)avr->cycle, (unsigned long long)dropped_bytes, min_sp);
	fclose(logf);
	printf("exit %s %llu\n", reason, (unsigned long long)avr->cycle);
	fflush(stdout);
	fprintf(stderr, "avrsim: %s after %.3f simulated s in %.3f wall s\n", reason,
	        (double)avr->cycle / avr->frequency, now_s() - wall0);
	return state == cpu_Crashed ? 3 : 0;
}
