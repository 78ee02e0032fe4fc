/*
 * kvmconf executor: makes the host's system calls inside the kernel under test.
 *
 * The suite stays on the host (harness/remote/backend.py); this program only carries
 * out what it is sent, so it decides nothing and stays small. Built once with
 * `gcc -static`, it needs nothing from the guest's root filesystem.
 *
 * The protocol is harness/remote/protocol.py's, which is its definition: frames of a
 * 16-byte header (magic "KVMX", version, kind, sequence, payload length) and a payload.
 * The executor sends HELLO once, then answers each BATCH with one REPLY: every
 * request's result (or -errno) and data, then the taint mask and the kernel log lines
 * written since the previous reply. A fault while touching its own memory (a bad
 * address in PEEK or POKE) is turned into -EFAULT, not a crash.
 *
 *   executor PATH      talk over PATH (a virtio-serial port, or a name under
 *                      /sys/class/virtio-ports)
 *   executor -         talk over stdin and stdout
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#define MAGIC "KVMX"
#define VERSION 1
#define HEADER 16
#define MAX_PAYLOAD (64u << 20)

enum kind { HELLO = 1, BATCH = 2, REPLY = 3, FAILURE = 4 };

enum op {
	OP_OPEN = 1, OP_CLOSE, OP_IOCTL, OP_FSTAT, OP_READ, OP_WRITE, OP_PREAD, OP_PWRITE,
	OP_MMAP, OP_MUNMAP, OP_MPROTECT, OP_FALLOCATE, OP_LSEEK, OP_FTRUNCATE, OP_FCNTL,
	OP_PEEK, OP_POKE, OP_FILL, OP_EXIT, OP_FDS, OP_SLURP, OP_READV, OP_PREADV, OP_FCHMOD, OP_EVENTFD,
	OP_MADVISE, OP_MBIND, OP_GET_MEMPOLICY, OP_TOUCH,
};

/* a request: op, data length, six arguments, then the data padded to 8 bytes */
struct request {
	uint32_t op;
	uint32_t len;
	uint64_t arg[6];
};

struct buf {
	unsigned char *p;
	size_t len, cap;
};

static int in_fd = 0, out_fd = 1, kmsg_fd = -1, taint_fd = -1;
static sigjmp_buf fault_jmp;
static volatile sig_atomic_t guarded;

static void die(const char *what)
{
	fprintf(stderr, "kvmconf-executor: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void reserve(struct buf *b, size_t more)
{
	if (b->len + more <= b->cap)
		return;
	while (b->cap < b->len + more)
		b->cap = b->cap ? b->cap * 2 : 65536;
	b->p = realloc(b->p, b->cap);
	if (!b->p)
		die("realloc");
}

static void put(struct buf *b, const void *data, size_t len)
{
	reserve(b, len);
	memcpy(b->p + b->len, data, len);
	b->len += len;
}

static void put_pad(struct buf *b)
{
	static const unsigned char zero[8];

	put(b, zero, (8 - b->len % 8) % 8);
}

static int read_full(int fd, void *p, size_t len)
{
	size_t done = 0;
	ssize_t r;

	while (done < len) {
		r = read(fd, (char *)p + done, len - done);
		if (r == 0)
			return -1;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			die("read");
		}
		done += r;
	}
	return 0;
}

static void write_full(int fd, const void *p, size_t len)
{
	size_t done = 0;
	ssize_t r;

	while (done < len) {
		r = write(fd, (const char *)p + done, len - done);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			die("write");
		}
		done += r;
	}
}

static void send_frame(uint16_t kind, uint32_t seq, struct buf *payload)
{
	unsigned char head[HEADER];
	uint16_t version = VERSION;
	uint32_t len = payload->len;

	memcpy(head, MAGIC, 4);
	memcpy(head + 4, &version, 2);
	memcpy(head + 6, &kind, 2);
	memcpy(head + 8, &seq, 4);
	memcpy(head + 12, &len, 4);
	write_full(out_fd, head, HEADER);
	write_full(out_fd, payload->p, payload->len);
}

static void on_fault(int sig)
{
	if (guarded)
		siglongjmp(fault_jmp, 1);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* memcpy that answers -EFAULT for an address this process cannot touch */
static int64_t copy_guarded(void *dst, const void *src, size_t len, int fill)
{
	if (sigsetjmp(fault_jmp, 1)) {
		guarded = 0;
		return -EFAULT;
	}
	guarded = 1;
	if (fill >= 0)
		memset(dst, fill, len);
	else
		memcpy(dst, src, len);
	guarded = 0;
	return len;
}

static int64_t ret(int64_t r)
{
	return r < 0 ? -errno : r;
}

static void put_stat(struct buf *out, int64_t *result, int fd)
{
	struct stat st;
	uint64_t v[13];

	if (fstat(fd, &st) != 0) {
		*result = -errno;
		return;
	}
	v[0] = st.st_dev; v[1] = st.st_ino; v[2] = st.st_mode; v[3] = st.st_nlink;
	v[4] = st.st_uid; v[5] = st.st_gid; v[6] = st.st_rdev; v[7] = st.st_size;
	v[8] = st.st_blksize; v[9] = st.st_blocks;
	v[10] = st.st_atim.tv_sec * 1000000000ull + st.st_atim.tv_nsec;
	v[11] = st.st_mtim.tv_sec * 1000000000ull + st.st_mtim.tv_nsec;
	v[12] = st.st_ctim.tv_sec * 1000000000ull + st.st_ctim.tv_nsec;
	put(out, v, sizeof(v));
	*result = 0;
}

/* "fd link" lines for every open fd: the host tells which are KVM's */
static int64_t put_fds(struct buf *out)
{
	char path[300], link[512];
	struct dirent *e;
	DIR *d = opendir("/proc/self/fd");
	ssize_t n;
	int64_t count = 0;

	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		n = readlink(path, link, sizeof(link) - 1);
		if (n < 0)
			continue; /* the fd that lists the directory, closed by now */
		put(out, e->d_name, strlen(e->d_name));
		put(out, " ", 1);
		put(out, link, n);
		put(out, "\n", 1);
		count++;
	}
	closedir(d);
	return count;
}

/* a whole file (a /proc one: its size says nothing) */
static int64_t put_file(struct buf *out, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int64_t total = 0;
	ssize_t n;

	if (fd < 0)
		return -errno;
	for (;;) {
		reserve(out, 65536);
		n = read(fd, out->p + out->len, 65536);
		if (n <= 0)
			break;
		out->len += n;
		total += n;
	}
	close(fd);
	return n < 0 ? -errno : total;
}

/* in a forked child, write `fill` over [p, p + len) (read it when fill < 0): the signal
 * that ended the child, 0 when it got through; a SIGBUS kills the child, not us */
static int64_t touch(volatile unsigned char *p, size_t len, int64_t fill)
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		signal(SIGBUS, SIG_DFL);
		signal(SIGSEGV, SIG_DFL);
		for (size_t i = 0; i < len; i++) {
			if (fill < 0)
				(void)p[i];
			else
				p[i] = (unsigned char)fill;
		}
		_exit(0);
	}
	if (waitpid(pid, &status, 0) < 0)
		return -errno;
	return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

/* one request; its data out (PEEK, FSTAT, FDS, SLURP) goes after the result in `out` */
static int64_t execute(const struct request *rq, const unsigned char *data, struct buf *out, int *quit)
{
	const uint64_t *a = rq->arg;
	char path[4096];
	int64_t r = -EINVAL;
	void *p;

	switch (rq->op) {
	case OP_OPEN:
		if (rq->len >= sizeof(path))
			return -ENAMETOOLONG;
		memcpy(path, data, rq->len);
		path[rq->len] = '\0';
		return ret(open(path, (int)a[0], (mode_t)a[1]));
	case OP_CLOSE:
		return ret(close((int)a[0]));
	case OP_IOCTL:
		return ret(ioctl((int)a[0], (unsigned long)(uint32_t)a[1], (unsigned long)a[2]));
	case OP_FSTAT:
		put_stat(out, &r, (int)a[0]);
		return r;
	case OP_READ:
		return ret(read((int)a[0], (void *)a[1], a[2]));
	case OP_WRITE:
		return ret(write((int)a[0], (const void *)a[1], a[2]));
	case OP_PREAD:
		return ret(pread((int)a[0], (void *)a[1], a[2], (off_t)a[3]));
	case OP_PWRITE:
		return ret(pwrite((int)a[0], (const void *)a[1], a[2], (off_t)a[3]));
	case OP_MMAP:
		p = mmap((void *)a[0], a[1], (int)a[2], (int)a[3], (int)a[4], (off_t)a[5]);
		return p == MAP_FAILED ? -errno : (int64_t)(uintptr_t)p;
	case OP_MUNMAP:
		return ret(munmap((void *)a[0], a[1]));
	case OP_MPROTECT:
		return ret(mprotect((void *)a[0], a[1], (int)a[2]));
	case OP_FALLOCATE:
		return ret(fallocate((int)a[0], (int)a[1], (off_t)a[2], (off_t)a[3]));
	case OP_LSEEK:
		return ret(lseek((int)a[0], (off_t)a[1], (int)a[2]));
	case OP_FTRUNCATE:
		return ret(ftruncate((int)a[0], (off_t)a[1]));
	case OP_FCNTL:
		return ret(fcntl((int)a[0], (int)a[1], (unsigned long)a[2]));
	case OP_READV: {
		struct iovec iov = { (void *)a[1], a[2] };
		return ret(readv((int)a[0], &iov, 1));
	}
	case OP_PREADV: {
		struct iovec iov = { (void *)a[1], a[2] };
		return ret(preadv((int)a[0], &iov, 1, (off_t)a[3]));
	}
	case OP_FCHMOD:
		return ret(fchmod((int)a[0], (mode_t)a[1]));
	case OP_EVENTFD:
		return ret(eventfd(0, EFD_CLOEXEC));
	case OP_MADVISE:
		return ret(madvise((void *)a[0], a[1], (int)a[2]));
	case OP_MBIND:
		return ret(syscall(SYS_mbind, a[0], a[1], a[2], a[3], a[4], a[5]));
	case OP_GET_MEMPOLICY:
		return ret(syscall(SYS_get_mempolicy, a[0], a[1], a[2], a[3], a[4]));
	case OP_TOUCH:
		return touch((volatile unsigned char *)a[0], a[1], (int64_t)a[2]);
	case OP_PEEK:
		if (a[1] > MAX_PAYLOAD)
			return -E2BIG;
		reserve(out, a[1]);
		r = copy_guarded(out->p + out->len, (const void *)a[0], a[1], -1);
		if (r >= 0)
			out->len += a[1];
		return r;
	case OP_POKE:
		return copy_guarded((void *)a[0], data, rq->len, -1);
	case OP_FILL:
		return copy_guarded((void *)a[0], NULL, a[1], (int)(a[2] & 0xff));
	case OP_EXIT:
		*quit = 1;
		return 0;
	case OP_FDS:
		return put_fds(out);
	case OP_SLURP:
		if (rq->len >= sizeof(path))
			return -ENAMETOOLONG;
		memcpy(path, data, rq->len);
		path[rq->len] = '\0';
		return put_file(out, path);
	}
	return r;
}

/* the trailer of every reply: taint mask (-1: unreadable), then new kernel log records */
static void put_health(struct buf *out)
{
	char text[64];
	int64_t taint = -1;
	uint32_t len;
	size_t at;
	ssize_t n;

	if (taint_fd >= 0 && (n = pread(taint_fd, text, sizeof(text) - 1, 0)) > 0) {
		text[n] = '\0';
		taint = strtoll(text, NULL, 10);
	}
	put(out, &taint, 8);
	at = out->len;
	len = 0;
	put(out, &len, 4);
	put(out, &len, 4);
	while (kmsg_fd >= 0) {
		reserve(out, 8192);
		n = read(kmsg_fd, out->p + out->len, 8192);
		if (n < 0 && errno == EPIPE)
			continue; /* records overwritten before they were read */
		if (n <= 0)
			break;
		out->len += n;
		len += n;
	}
	memcpy(out->p + at, &len, 4);
	put_pad(out);
}

static void hello(void)
{
	struct buf out = { 0 };
	struct utsname uts;
	uint32_t len, pid = getpid(), page = sysconf(_SC_PAGESIZE);

	uname(&uts);
	len = strlen(uts.release);
	put(&out, &pid, 4);
	put(&out, &page, 4);
	put(&out, &len, 4);
	put(&out, uts.release, len);
	send_frame(HELLO, 0, &out);
	free(out.p);
}

static void fail(uint32_t seq, const char *why)
{
	struct buf out = { 0 };

	put(&out, why, strlen(why));
	send_frame(FAILURE, seq, &out);
	exit(3);
}

static void serve(void)
{
	struct buf in = { 0 }, out = { 0 };
	unsigned char head[HEADER];
	uint16_t version, kind;
	uint32_t seq, len, count, i;
	int quit = 0;

	while (!quit && read_full(in_fd, head, HEADER) == 0) {
		memcpy(&version, head + 4, 2);
		memcpy(&kind, head + 6, 2);
		memcpy(&seq, head + 8, 4);
		memcpy(&len, head + 12, 4);
		if (memcmp(head, MAGIC, 4) != 0)
			fail(seq, "bad magic");
		if (version != VERSION)
			fail(seq, "unsupported protocol version");
		if (kind != BATCH || len > MAX_PAYLOAD || len < 4)
			fail(seq, "not a batch");
		in.len = 0;
		reserve(&in, len);
		if (read_full(in_fd, in.p, len) != 0)
			break;
		memcpy(&count, in.p, 4);
		out.len = 0;
		put(&out, &count, 4);
		put_pad(&out);
		size_t at = 8;
		for (i = 0; i < count; i++) {
			struct request rq;
			int64_t result;
			uint32_t out_len;
			size_t slot;

			if (at + sizeof(rq) > len)
				fail(seq, "truncated request");
			memcpy(&rq, in.p + at, sizeof(rq));
			at += sizeof(rq);
			if (rq.len > len - at)
				fail(seq, "truncated request data");
			slot = out.len;
			put(&out, &slot, 8); /* result and data length, filled in below */
			put(&out, &slot, 8);
			result = execute(&rq, in.p + at, &out, &quit);
			at += (rq.len + 7) / 8 * 8;
			out_len = out.len - slot - 16;
			memcpy(out.p + slot, &result, 8);
			memcpy(out.p + slot + 8, &out_len, 4);
			put_pad(&out);
			if (quit)
				count = i + 1;
		}
		memcpy(out.p, &count, 4);
		put_health(&out);
		send_frame(REPLY, seq, &out);
	}
}

/* a virtio-serial port named `name` (QEMU's virtserialport name=) */
static int open_port(const char *name)
{
	char path[512], got[256];
	struct dirent *e;
	DIR *d;
	int fd;
	ssize_t n;

	if (strchr(name, '/'))
		return open(name, O_RDWR | O_CLOEXEC);
	d = opendir("/sys/class/virtio-ports");
	while (d && (e = readdir(d))) {
		snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", e->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = read(fd, got, sizeof(got) - 1);
		close(fd);
		if (n > 0 && got[n - 1] == '\n')
			n--;
		if (n > 0 && (size_t)n == strlen(name) && !memcmp(got, name, n)) {
			snprintf(path, sizeof(path), "/dev/%s", e->d_name);
			closedir(d);
			return open(path, O_RDWR | O_CLOEXEC);
		}
	}
	if (d)
		closedir(d);
	errno = ENOENT;
	return -1;
}

int main(int argc, char **argv)
{
	struct sigaction sa;

	if (argc != 2) {
		fprintf(stderr, "usage: %s PORT|-\n", argv[0]);
		return 2;
	}
	if (strcmp(argv[1], "-") != 0) {
		in_fd = out_fd = open_port(argv[1]);
		if (in_fd < 0)
			die(argv[1]);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_fault;
	sa.sa_flags = SA_NODEFER;
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	kmsg_fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (kmsg_fd >= 0)
		lseek(kmsg_fd, 0, SEEK_END);
	taint_fd = open("/proc/sys/kernel/tainted", O_RDONLY | O_CLOEXEC);
	hello();
	serve();
	return 0;
}
