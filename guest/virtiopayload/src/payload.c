/*
 * A minimal virtio 1.x (virtio-mmio version 2) driver that runs in guest
 * ring 3 (start.S gets it there). It finds its devices in the
 * virtio_mmio.device= parameters of the kernel command line, drives one
 * split virtqueue per device by polling the used ring (no interrupts), and
 * reports on COM1 in lines starting with "VP-". The workload is chosen on
 * the command line:
 *
 *   vp=rw     every block device: capacity, GET_ID, a read of sectors
 *             64..71 (FNV-1a printed), then on a writable disk a pattern
 *             written to sectors 0..7 and the last 8 sectors, read back
 *             and compared, and a flush; on a read-only disk a write that
 *             must fail with VIRTIO_BLK_S_IOERR. Every RNG: two 64-byte
 *             reads, not all zero and different.
 *   vp=bench  the first block device: vpops= sequential then random 4 KiB
 *             writes and reads, vpqd= requests in flight, timed with rdtsc.
 *   vp=hostile  the first block device gets a buffer outside guest RAM, a
 *             looping descriptor chain and an available index more than a
 *             queue ahead; each must be refused (error status or
 *             DEVICE_NEEDS_RESET), then a reset device must read again.
 *   vp=net    the first network device: its MAC and link state from the
 *             config space, then a frame exchange with the host over the
 *             device's tap (see net_test).
 *
 * Then it prints "VP-END" and powers off through the ACPI sleep port.
 */
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define barrier() __asm__ __volatile__("" ::: "memory")

void *memset(void *d, int c, unsigned long n)
{
	u8 *p = d;
	while (n--)
		*p++ = (u8)c;
	return d;
}

void *memcpy(void *d, const void *s, unsigned long n)
{
	u8 *p = d;
	const u8 *q = s;
	while (n--)
		*p++ = *q++;
	return d;
}

static inline void outb(u16 port, u8 v)
{
	__asm__ __volatile__("outb %0, %1" ::"a"(v), "Nd"(port));
}

static inline u64 rdtsc(void)
{
	u32 lo, hi;
	__asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
	return ((u64)hi << 32) | lo;
}

/* ---- console ---- */

static void putc_(char c) { outb(0x3f8, (u8)c); }

static void puts_(const char *s)
{
	while (*s)
		putc_(*s++);
}

static void putdec(u64 v)
{
	char b[24];
	int i = 0;
	do {
		b[i++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (i)
		putc_(b[--i]);
}

static void puthex(u64 v, int digits)
{
	for (int i = digits - 1; i >= 0; i--)
		putc_("0123456789abcdef"[(v >> (i * 4)) & 15]);
}

static int failed;

static void fail(const char *what, u64 v)
{
	puts_("VP-FAIL ");
	puts_(what);
	puts_(" ");
	putdec(v);
	puts_("\r\n");
	failed = 1;
}

static void poweroff(void)
{
	puts_(failed ? "VP-END fail\r\n" : "VP-END pass\r\n");
	outb(0x608, 0x34);
	for (;;)
		__asm__ __volatile__("pause");
}

/* ---- command line ---- */

static const char *cmdline;

static int prefix(const char *s, const char *p)
{
	while (*p)
		if (*s++ != *p++)
			return 0;
	return 1;
}

/* param returns the value of the first "name=" parameter, or 0. */
static const char *param(const char *name, int nth)
{
	const char *s = cmdline;
	int len = 0;
	while (name[len])
		len++;
	while (*s) {
		while (*s == ' ')
			s++;
		if (prefix(s, name) && s[len] == '=') {
			if (nth-- == 0)
				return s + len + 1;
		}
		while (*s && *s != ' ')
			s++;
	}
	return 0;
}

static u64 parsenum(const char *s, const char **end)
{
	u64 v = 0;
	int base = 10;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	for (;; s++) {
		int d;
		if (*s >= '0' && *s <= '9')
			d = *s - '0';
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = *s - 'a' + 10;
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			d = *s - 'A' + 10;
		else
			break;
		v = v * base + d;
	}
	if (end)
		*end = s;
	return v;
}

static u64 numparam(const char *name, u64 def)
{
	const char *v = param(name, 0);
	return v ? parsenum(v, 0) : def;
}

/* ---- virtio-mmio ---- */

enum {
	REG_MAGIC = 0x000, REG_VERSION = 0x004, REG_DEVICE_ID = 0x008,
	REG_DEV_FEATURES = 0x010, REG_DEV_FEATURES_SEL = 0x014,
	REG_DRV_FEATURES = 0x020, REG_DRV_FEATURES_SEL = 0x024,
	REG_QUEUE_SEL = 0x030, REG_QUEUE_NUM_MAX = 0x034, REG_QUEUE_NUM = 0x038,
	REG_QUEUE_READY = 0x044, REG_QUEUE_NOTIFY = 0x050, REG_STATUS = 0x070,
	REG_DESC_LO = 0x080, REG_DESC_HI = 0x084, REG_DRIVER_LO = 0x090,
	REG_DRIVER_HI = 0x094, REG_DEVICE_LO = 0x0a0, REG_DEVICE_HI = 0x0a4,
	REG_CONFIG = 0x100,
};

enum { ST_ACK = 1, ST_DRIVER = 2, ST_DRIVER_OK = 4, ST_FEATURES_OK = 8 };
enum { DEV_NET = 1, DEV_BLOCK = 2, DEV_RNG = 4 };
enum { DESC_NEXT = 1, DESC_WRITE = 2 };

#define QSIZE 64
#define MAXDEV 8
/* Ring blocks: one per device, plus one for a network device's transmit
 * queue (a second struct dev on the same registers). */
#define NRINGS (MAXDEV + 1)

struct desc { u64 addr; u32 len; u16 flags, next; };
struct avail { u16 flags, idx, ring[QSIZE]; };
struct used_elem { u32 id, len; };
struct used { u16 flags, idx; struct used_elem ring[QSIZE]; };

/* One 3-page block per queue: descriptors, driver area, device area. */
static u8 ringmem[NRINGS][3 * 4096] __attribute__((aligned(4096)));

/* dev is one virtqueue of a device: most devices here use only queue 0;
 * a network device is two of these on the same registers. */
struct dev {
	u64 base;
	u32 id;
	u32 features_lo;
	u16 qidx;
	u16 qsize;
	u16 last_used;
	struct desc *desc;
	volatile struct avail *avail;
	volatile struct used *used;
};

static inline u32 rd(struct dev *d, u32 off) { return *(volatile u32 *)(d->base + off); }
static inline void wr(struct dev *d, u32 off, u32 v) { *(volatile u32 *)(d->base + off) = v; }

/* dev_begin resets a device and negotiates VERSION_1 plus the wanted low
 * feature bits it offers; 0 on success. */
static int dev_begin(struct dev *d, u32 want_lo)
{
	wr(d, REG_STATUS, 0);
	if (rd(d, REG_STATUS) != 0)
		return 1;
	wr(d, REG_STATUS, ST_ACK);
	wr(d, REG_STATUS, ST_ACK | ST_DRIVER);
	wr(d, REG_DEV_FEATURES_SEL, 0);
	u32 lo = rd(d, REG_DEV_FEATURES);
	wr(d, REG_DEV_FEATURES_SEL, 1);
	u32 hi = rd(d, REG_DEV_FEATURES);
	if (!(hi & 1))
		return 2; /* no VIRTIO_F_VERSION_1: not a modern device */
	d->features_lo = lo & want_lo;
	wr(d, REG_DRV_FEATURES_SEL, 0);
	wr(d, REG_DRV_FEATURES, d->features_lo);
	wr(d, REG_DRV_FEATURES_SEL, 1);
	wr(d, REG_DRV_FEATURES, 1);
	wr(d, REG_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK);
	if (!(rd(d, REG_STATUS) & ST_FEATURES_OK))
		return 3;
	return 0;
}

/* queue_setup gives queue q of the device ring block slot; 0 on success. */
static int queue_setup(struct dev *d, u16 q, int slot)
{
	d->qidx = q;
	wr(d, REG_QUEUE_SEL, q);
	u32 max = rd(d, REG_QUEUE_NUM_MAX);
	if (max == 0)
		return 4;
	d->qsize = max < QSIZE ? (u16)max : QSIZE;
	u8 *m = ringmem[slot];
	memset(m, 0, sizeof ringmem[slot]);
	d->desc = (struct desc *)m;
	d->avail = (volatile struct avail *)(m + 4096);
	d->used = (volatile struct used *)(m + 8192);
	d->avail->flags = 1; /* VIRTQ_AVAIL_F_NO_INTERRUPT: we poll */
	d->last_used = 0;
	wr(d, REG_QUEUE_NUM, d->qsize);
	wr(d, REG_DESC_LO, (u32)(u64)d->desc);
	wr(d, REG_DESC_HI, (u32)((u64)d->desc >> 32));
	wr(d, REG_DRIVER_LO, (u32)(u64)d->avail);
	wr(d, REG_DRIVER_HI, (u32)((u64)d->avail >> 32));
	wr(d, REG_DEVICE_LO, (u32)(u64)d->used);
	wr(d, REG_DEVICE_HI, (u32)((u64)d->used >> 32));
	wr(d, REG_QUEUE_READY, 1);
	return 0;
}

/* dev_ready sets DRIVER_OK; 0 on success. */
static int dev_ready(struct dev *d)
{
	wr(d, REG_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);
	return rd(d, REG_STATUS) & ST_DRIVER_OK ? 0 : 5;
}

/* dev_init brings a one-queue device to DRIVER_OK with VERSION_1 and the
 * wanted low feature bits the device offers; 0 on success. */
static int dev_init(struct dev *d, int slot, u32 want_lo)
{
	int err = dev_begin(d, want_lo);
	if (!err)
		err = queue_setup(d, 0, slot);
	if (!err)
		err = dev_ready(d);
	return err;
}

/* post puts the chain starting at head in the avail ring (no notify). */
static void post(struct dev *d, u16 head)
{
	u16 i = d->avail->idx;
	d->avail->ring[i % d->qsize] = head;
	barrier();
	d->avail->idx = (u16)(i + 1);
	barrier();
}

static void notify(struct dev *d) { wr(d, REG_QUEUE_NOTIFY, d->qidx); }

/* reap waits for the next used element and returns it. */
static struct used_elem reap(struct dev *d)
{
	while (d->used->idx == d->last_used)
		__asm__ __volatile__("pause" ::: "memory");
	barrier();
	struct used_elem e;
	e.id = d->used->ring[d->last_used % d->qsize].id;
	e.len = d->used->ring[d->last_used % d->qsize].len;
	d->last_used++;
	return e;
}

static void setdesc(struct dev *d, u16 i, void *addr, u32 len, u16 flags, u16 next)
{
	d->desc[i].addr = (u64)addr;
	d->desc[i].len = len;
	d->desc[i].flags = flags;
	d->desc[i].next = next;
}

/* ---- virtio-blk ---- */

enum { BLK_T_IN = 0, BLK_T_OUT = 1, BLK_T_FLUSH = 4, BLK_T_GET_ID = 8 };
enum { BLK_F_RO = 1 << 5, BLK_F_FLUSH = 1 << 9 };

struct blkreq {
	u32 type, reserved;
	u64 sector;
	u8 status;
	u8 pad[15];
};

#define MAXQD 16
static struct blkreq reqs[MAXQD];
static u8 bufs[MAXQD][4096] __attribute__((aligned(4096)));
static u8 scratch[4096] __attribute__((aligned(4096)));

/* blk_prepare builds request slot r (descriptors 3r..3r+2). */
static u16 blk_prepare(struct dev *d, int r, u32 type, u64 sector, void *buf, u32 len)
{
	u16 h = (u16)(3 * r);
	reqs[r].type = type;
	reqs[r].reserved = 0;
	reqs[r].sector = sector;
	reqs[r].status = 0xff;
	if (len == 0) {
		setdesc(d, h, &reqs[r], 16, DESC_NEXT, h + 2);
	} else {
		setdesc(d, h, &reqs[r], 16, DESC_NEXT, h + 1);
		setdesc(d, h + 1, buf, len, (u16)(DESC_NEXT | (type == BLK_T_OUT ? 0 : DESC_WRITE)), h + 2);
	}
	setdesc(d, h + 2, &reqs[r].status, 1, DESC_WRITE, 0);
	return h;
}

/* blk_do runs one request synchronously and returns its status. */
static int blk_do(struct dev *d, u32 type, u64 sector, void *buf, u32 len)
{
	post(d, blk_prepare(d, 0, type, sector, buf, len));
	notify(d);
	reap(d);
	return reqs[0].status;
}

static u8 pattern(u64 sector, u32 i)
{
	return (u8)((sector * 37) ^ (i * 13) ^ (i >> 8) ^ 0xa5);
}

static u32 fnv1a(const u8 *p, u32 n)
{
	u32 h = 2166136261u;
	while (n--)
		h = (h ^ *p++) * 16777619u;
	return h;
}

static u64 blk_capacity(struct dev *d)
{
	return rd(d, REG_CONFIG) | ((u64)rd(d, REG_CONFIG + 4) << 32);
}

static void blk_serial(struct dev *d, char out[21])
{
	memset(out, 0, 21);
	int st = blk_do(d, BLK_T_GET_ID, 0, out, 20);
	if (st != 0)
		fail("blk get-id status", st);
	for (int i = 0; i < 20; i++)
		if (out[i] && (out[i] < 0x21 || out[i] > 0x7e))
			out[i] = '?';
}

/* blk_rw writes the pattern at sector s (8 sectors), reads it back and
 * compares; 0 on success. */
static int blk_rw(struct dev *d, u64 s)
{
	for (u32 k = 0; k < 8; k++)
		for (u32 i = 0; i < 512; i++)
			bufs[0][k * 512 + i] = pattern(s + k, i);
	int st = blk_do(d, BLK_T_OUT, s, bufs[0], 4096);
	if (st != 0) {
		fail("blk write status", st);
		return 1;
	}
	memset(scratch, 0, 4096);
	st = blk_do(d, BLK_T_IN, s, scratch, 4096);
	if (st != 0) {
		fail("blk read-back status", st);
		return 1;
	}
	for (u32 i = 0; i < 4096; i++)
		if (scratch[i] != bufs[0][i]) {
			fail("blk read-back differs at byte", s * 512 + i);
			return 1;
		}
	return 0;
}

static void blk_test(struct dev *d, int n)
{
	u64 cap = blk_capacity(d);
	char serial[21];
	blk_serial(d, serial);
	if (cap < 128) {
		fail("blk capacity too small (sectors)", cap);
		return;
	}
	memset(scratch, 0, 4096);
	int st = blk_do(d, BLK_T_IN, 64, scratch, 4096);
	if (st != 0) {
		fail("blk read status", st);
		return;
	}
	u32 sum = fnv1a(scratch, 4096);
	/* A read past the end must fail. */
	st = blk_do(d, BLK_T_IN, cap, scratch, 512);
	if (st != 1) {
		fail("blk read past the end: status", st);
		return;
	}
	if (d->features_lo & BLK_F_RO) {
		for (u32 i = 0; i < 4096; i++)
			bufs[0][i] = pattern(0, i);
		st = blk_do(d, BLK_T_OUT, 0, bufs[0], 4096);
		if (st != 1) {
			fail("blk write to a read-only disk: status", st);
			return;
		}
		puts_("VP-OK blk");
		putdec(n);
		puts_(" ro capacity=");
		putdec(cap);
		puts_(" serial=");
		puts_(serial[0] ? serial : "-");
		puts_(" read-fnv=");
		puthex(sum, 8);
		puts_(" write-status=1\r\n");
		return;
	}
	if (blk_rw(d, 0) || blk_rw(d, cap - 8))
		return;
	if (d->features_lo & BLK_F_FLUSH) {
		st = blk_do(d, BLK_T_FLUSH, 0, 0, 0);
		if (st != 0) {
			fail("blk flush status", st);
			return;
		}
	}
	puts_("VP-OK blk");
	putdec(n);
	puts_(" rw capacity=");
	putdec(cap);
	puts_(" serial=");
	puts_(serial[0] ? serial : "-");
	puts_(" read-fnv=");
	puthex(sum, 8);
	puts_(" wrote=0,");
	putdec(cap - 8);
	puts_(d->features_lo & BLK_F_FLUSH ? " flushed\r\n" : "\r\n");
}

static u64 rng_state = 0x9e3779b97f4a7c15ull;

static u64 xorshift(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* bench_phase runs ops 4 KiB requests of type at depth qd. */
static void bench_phase(struct dev *d, const char *name, u32 type, int random,
			u64 ops, u64 qd, u64 blocks)
{
	u64 next = 0, done = 0, t0 = rdtsc(), best = ~0ull;
	while (done < ops) {
		u64 b0 = rdtsc();
		u64 batch = ops - done < qd ? ops - done : qd;
		for (u64 r = 0; r < batch; r++) {
			u64 blk = random ? xorshift() % blocks : next++ % blocks;
			post(d, blk_prepare(d, (int)r, type, blk * 8, bufs[r], 4096));
		}
		notify(d);
		for (u64 r = 0; r < batch; r++)
			reap(d);
		for (u64 r = 0; r < batch; r++)
			if (reqs[r].status != 0) {
				fail("bench request status", reqs[r].status);
				return;
			}
		done += batch;
		if (rdtsc() - b0 < best)
			best = rdtsc() - b0;
	}
	u64 t1 = rdtsc();
	puts_("VP-BENCH ");
	puts_(name);
	puts_(" ops=");
	putdec(ops);
	puts_(" bytes=");
	putdec(ops * 4096);
	puts_(" cycles=");
	putdec(t1 - t0);
	puts_(" min-batch-cycles=");
	putdec(best);
	puts_("\r\n");
}

static void blk_bench(struct dev *d)
{
	u64 ops = numparam("vpops", 1024), qd = numparam("vpqd", 1);
	if (qd < 1 || qd > MAXQD || 3 * qd > d->qsize) {
		fail("vpqd out of range", qd);
		return;
	}
	u64 blocks = blk_capacity(d) / 8;
	if (blocks == 0) {
		fail("bench disk smaller than 4 KiB", 0);
		return;
	}
	if (blocks > ops)
		blocks = ops;
	for (u64 r = 0; r < qd; r++)
		for (u32 i = 0; i < 4096; i++)
			bufs[r][i] = pattern(r, i);
	puts_("VP-TSC khz=");
	putdec(numparam("tsc_early_khz", 0));
	puts_(" qd=");
	putdec(qd);
	puts_("\r\n");
	bench_phase(d, "seq-write", BLK_T_OUT, 0, ops, qd, blocks);
	bench_phase(d, "seq-read", BLK_T_IN, 0, ops, qd, blocks);
	bench_phase(d, "rand-write", BLK_T_OUT, 1, ops, qd, blocks);
	bench_phase(d, "rand-read", BLK_T_IN, 1, ops, qd, blocks);
	if (!failed)
		puts_("VP-OK bench\r\n");
}

/* ---- hostile requests ---- */

/* outcome waits (up to ~10 s of TSC) for the device to either complete
 * the request or flag DEVICE_NEEDS_RESET, and names what happened. */
static const char *outcome(struct dev *d, u8 *status)
{
	u64 khz = numparam("tsc_early_khz", 3000000);
	u64 t0 = rdtsc();
	for (;;) {
		if (d->used->idx != d->last_used) {
			reap(d);
			*status = reqs[0].status;
			return "completed";
		}
		if (rd(d, REG_STATUS) & 0x40)
			return "needs-reset";
		if (rdtsc() - t0 > khz * 10000)
			return 0;
		for (int i = 0; i < 1000; i++)
			__asm__ __volatile__("pause" ::: "memory");
	}
}

/* hostile_case runs one bad request on a freshly initialised device and
 * prints its outcome; 0 if the device refused it. */
static int hostile_case(struct dev *d, int slot, int which)
{
	static const char *names[] = {"bad-addr", "desc-loop", "idx-jump"};
	int err = dev_init(d, slot, BLK_F_FLUSH);
	if (err) {
		fail("hostile: device init step", err);
		return 1;
	}
	u16 h = blk_prepare(d, 0, BLK_T_IN, 64, scratch, 4096);
	switch (which) {
	case 0: /* the data buffer far outside guest RAM */
		d->desc[h + 1].addr = 0x7ff000000000ull;
		post(d, h);
		break;
	case 1: /* a descriptor chain that loops on itself */
		d->desc[h + 1].next = h;
		post(d, h);
		break;
	case 2: /* the available index runs more than a queue ahead */
		d->avail->ring[0] = h;
		barrier();
		d->avail->idx = (u16)(d->qsize + 5);
		break;
	}
	notify(d);
	u8 status = 0xff;
	const char *o = outcome(d, &status);
	puts_(" ");
	puts_(names[which]);
	puts_("=");
	if (!o) {
		puts_("timeout\r\n");
		fail("hostile: no answer to", which);
		return 1;
	}
	puts_(o);
	if (o[0] == 'c') {
		puts_(":");
		putdec(status);
		if (status == 0) {
			puts_("\r\n");
			fail("hostile: request accepted:", which);
			return 1;
		}
	}
	return 0;
}

/* hostile feeds the first block device requests a malicious guest would,
 * each must be refused (an error status or DEVICE_NEEDS_RESET) without
 * the VMM failing; then a reset device must work again. */
static void hostile(struct dev *d, int slot)
{
	puts_("VP-HOSTILE");
	for (int which = 0; which < 3; which++)
		if (hostile_case(d, slot, which))
			return;
	puts_("\r\n");
	int err = dev_init(d, slot, BLK_F_FLUSH);
	if (err) {
		fail("hostile: re-init step", err);
		return;
	}
	memset(scratch, 0, 4096);
	int st = blk_do(d, BLK_T_IN, 64, scratch, 4096);
	if (st != 0) {
		fail("hostile: read after reset: status", st);
		return;
	}
	puts_("VP-OK hostile recovered read-fnv=");
	puthex(fnv1a(scratch, 4096), 8);
	puts_("\r\n");
}

/* ---- virtio-rng ---- */

static u8 entropy[2][64];

static void rng_test(struct dev *d, int n)
{
	for (int k = 0; k < 2; k++) {
		u32 got = 0;
		while (got < 64) {
			setdesc(d, 0, entropy[k] + got, 64 - got, DESC_WRITE, 0);
			post(d, 0);
			notify(d);
			struct used_elem e = reap(d);
			if (e.len == 0 || e.len > 64 - got) {
				fail("rng used length", e.len);
				return;
			}
			got += e.len;
		}
	}
	int zero = 1, same = 1;
	for (int i = 0; i < 64; i++) {
		if (entropy[0][i] || entropy[1][i])
			zero = 0;
		if (entropy[0][i] != entropy[1][i])
			same = 0;
	}
	if (zero || same) {
		fail("rng bytes all zero or repeated", zero);
		return;
	}
	puts_("VP-OK rng");
	putdec(n);
	puts_(" bytes=128 first=");
	for (int i = 0; i < 8; i++)
		puthex(entropy[0][i], 2);
	puts_("\r\n");
}

/* ---- virtio-net ---- */

/*
 * The exchange with the host, all in frames of ethertype 0x88b5 (IEEE's
 * local experimental type) so nothing else on the link is mistaken for it:
 *   guest -> broadcast  "VP-HELLO <seq>" about every 50 ms until the host
 *                       answers, so the host may attach late;
 *   host -> guest       a data frame whose payload starts with 'D': the
 *                       guest answers "VP-ECHO <fnv> " + the payload, where
 *                       fnv is FNV-1a of the whole received frame;
 *   host -> guest       a frame whose payload starts with 'Q': done.
 * Frames of other types (IPv6 router solicitations and the like) are
 * counted and dropped.
 */
enum { NET_F_MAC = 1 << 5, NET_F_STATUS = 1 << 16 };
#define NET_HDR 12
#define NET_FRAME_MAX 1514
#define NET_RXBUFS 16
#define ETHERTYPE_VP 0x88b5

static u8 rxbufs[NET_RXBUFS][2048] __attribute__((aligned(4096)));
static u8 txbuf[2048] __attribute__((aligned(4096)));

static void net_rx_post(struct dev *rx, u16 i)
{
	setdesc(rx, i, rxbufs[i], sizeof rxbufs[i], DESC_WRITE, 0);
	post(rx, i);
}

/* net_send transmits txbuf's frame of len bytes (after the header) and
 * waits for the device to consume it; 0 on success. */
static int net_send(struct dev *tx, u32 len)
{
	memset(txbuf, 0, NET_HDR); /* no checksum offload, no GSO */
	setdesc(tx, 0, txbuf, NET_HDR + len, 0, 0);
	post(tx, 0);
	notify(tx);
	struct used_elem e = reap(tx);
	if (e.id != 0) {
		fail("net tx used id", e.id);
		return 1;
	}
	return 0;
}

/* net_frame starts a frame in txbuf to dst and returns where its payload
 * goes. */
static u8 *net_frame(const u8 *dst, const u8 *mac)
{
	u8 *f = txbuf + NET_HDR;
	memcpy(f, dst, 6);
	memcpy(f + 6, mac, 6);
	f[12] = ETHERTYPE_VP >> 8;
	f[13] = ETHERTYPE_VP & 0xff;
	return f + 14;
}

static u8 *putstr(u8 *p, const char *s)
{
	while (*s)
		*p++ = (u8)*s++;
	return p;
}

static u8 *puthexbuf(u8 *p, u64 v, int digits)
{
	for (int i = digits - 1; i >= 0; i--)
		*p++ = (u8)"0123456789abcdef"[(v >> (i * 4)) & 15];
	return p;
}

static void putmac(const u8 *mac)
{
	for (int i = 0; i < 6; i++) {
		if (i)
			putc_(':');
		puthex(mac[i], 2);
	}
}

static void net_test(struct dev *rx, int n, int txslot)
{
	static struct dev txq;
	static const u8 bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	u8 mac[6];
	if (!(rx->features_lo & NET_F_MAC)) {
		fail("net: device offers no MAC", 0);
		return;
	}
	for (int i = 0; i < 6; i++)
		mac[i] = *(volatile u8 *)(rx->base + REG_CONFIG + i);
	int link_up = 1;
	if (rx->features_lo & NET_F_STATUS)
		link_up = *(volatile u16 *)(rx->base + REG_CONFIG + 6) & 1;

	/* Queue 0 (receive) is set up by the caller; add queue 1. */
	struct dev *tx = &txq;
	*tx = *rx;
	int err = queue_setup(tx, 1, txslot);
	if (!err)
		err = dev_ready(rx);
	if (err) {
		fail("net: queue setup step", err);
		return;
	}
	for (u16 i = 0; i < NET_RXBUFS; i++)
		net_rx_post(rx, i);
	notify(rx);

	u64 khz = numparam("tsc_early_khz", 3000000);
	u64 hello_every = khz * 50, deadline = khz * 30000;
	u64 t0 = rdtsc(), last_hello = 0, hellos = 0, echoed = 0, bytes = 0, other = 0;
	int quit = 0;
	while (!quit) {
		u64 now = rdtsc();
		if (now - t0 > deadline) {
			fail(echoed ? "net: no quit frame from the host; echoed" : "net: no frame from the host; hellos sent", echoed ? echoed : hellos);
			return;
		}
		if (!echoed && (hellos == 0 || now - last_hello > hello_every)) {
			u8 *p = net_frame(bcast, mac);
			p = putstr(p, "VP-HELLO ");
			p = puthexbuf(p, hellos, 8);
			u32 len = (u32)(p - (txbuf + NET_HDR));
			while (len < 60)
				txbuf[NET_HDR + len++] = 0;
			if (net_send(tx, len))
				return;
			hellos++;
			last_hello = now;
		}
		if (rx->used->idx == rx->last_used) {
			for (int i = 0; i < 100; i++)
				__asm__ __volatile__("pause" ::: "memory");
			continue;
		}
		struct used_elem e = reap(rx);
		if (e.id >= NET_RXBUFS || e.len < NET_HDR || e.len > NET_HDR + NET_FRAME_MAX) {
			fail("net: bad used element, id", e.id);
			return;
		}
		const u8 *f = rxbufs[e.id] + NET_HDR;
		u32 flen = e.len - NET_HDR;
		if (rxbufs[e.id][10] != 1 || rxbufs[e.id][11] != 0) {
			fail("net: num_buffers", rxbufs[e.id][10]);
			return;
		}
		if (flen < 15 || f[12] != (ETHERTYPE_VP >> 8) || f[13] != (ETHERTYPE_VP & 0xff)) {
			other++;
		} else if (f[14] == 'Q') {
			quit = 1;
		} else if (f[14] == 'D') {
			for (int i = 0; i < 6; i++)
				if (f[i] != mac[i]) {
					fail("net: data frame not to our MAC, byte", i);
					return;
				}
			u32 sum = fnv1a(f, flen);
			u8 *p = net_frame(f + 6, mac);
			p = putstr(p, "VP-ECHO ");
			p = puthexbuf(p, sum, 8);
			*p++ = ' ';
			u32 room = NET_FRAME_MAX - (u32)(p - (txbuf + NET_HDR));
			u32 n = flen - 14 < room ? flen - 14 : room;
			memcpy(p, f + 14, n);
			if (net_send(tx, (u32)(p - (txbuf + NET_HDR)) + n))
				return;
			echoed++;
			bytes += flen;
		} else {
			other++;
		}
		net_rx_post(rx, (u16)e.id);
		notify(rx);
	}
	puts_("VP-OK net");
	putdec(n);
	puts_(" mac=");
	putmac(mac);
	puts_(link_up ? " link=up" : " link=down");
	puts_(" hellos=");
	putdec(hellos);
	puts_(" echoed=");
	putdec(echoed);
	puts_(" rx-bytes=");
	putdec(bytes);
	puts_(" other=");
	putdec(other);
	puts_("\r\n");
}

/* ---- main ---- */

void vp_main(const u8 *zeropage)
{
	static struct dev devs[MAXDEV];
	cmdline = (const char *)(u64)*(const u32 *)(zeropage + 0x228);
	puts_("VP-START\r\n");
	const char *mode = param("vp", 0);
	int bench = mode && prefix(mode, "bench");
	int hostile_mode = mode && prefix(mode, "hostile");
	int net_mode = mode && prefix(mode, "net");
	int ndev = 0, nblk = 0, nrng = 0, nnet = 0;
	for (int i = 0; i < MAXDEV; i++) {
		const char *v = param("virtio_mmio.device", i);
		if (!v)
			break;
		while (*v && *v != '@')
			v++;
		if (*v != '@') {
			fail("bad virtio_mmio.device parameter", i);
			break;
		}
		struct dev *d = &devs[ndev];
		d->base = parsenum(v + 1, 0);
		if (rd(d, REG_MAGIC) != 0x74726976 || rd(d, REG_VERSION) != 2) {
			fail("no modern virtio-mmio device at", d->base);
			continue;
		}
		d->id = rd(d, REG_DEVICE_ID);
		int err;
		if (d->id == DEV_NET) {
			/* Both queues before DRIVER_OK: net_test adds the second. */
			err = dev_begin(d, NET_F_MAC | NET_F_STATUS);
			if (!err)
				err = queue_setup(d, 0, ndev);
		} else {
			u32 want = d->id == DEV_BLOCK ? (BLK_F_RO | BLK_F_FLUSH) : 0;
			err = dev_init(d, ndev, want);
		}
		if (err) {
			fail("device init step", err);
			continue;
		}
		ndev++;
		if (d->id == DEV_NET) {
			if (net_mode && nnet == 0)
				net_test(d, nnet, MAXDEV);
			nnet++;
			continue;
		}
		if (net_mode)
			continue;
		if (d->id == DEV_BLOCK) {
			if (bench || hostile_mode) {
				if (nblk == 0 && bench)
					blk_bench(d);
				if (nblk == 0 && hostile_mode)
					hostile(d, ndev - 1);
			} else {
				blk_test(d, nblk);
			}
			nblk++;
		} else if (d->id == DEV_RNG && !bench && !hostile_mode) {
			rng_test(d, nrng++);
		}
	}
	if (ndev == 0)
		fail("no virtio devices on the command line", 0);
	if (net_mode && nnet == 0)
		fail("vp=net: no network device", 0);
	poweroff();
}
