/*
 * kvmconf guest init: PID 1 of the QEMU guest, built once with `gcc -static`.
 *
 * It runs a script the host wrote to /kvmconf/script (NUL-separated tokens, see
 * harness/qemu/initramfs.py): load modules, check a device, mount, switch root, then
 * run one command with its output on the console. It decides nothing itself, so the
 * logic lives in typed, tested Python and this file stays a small interpreter.
 *
 * Every event is one console line starting with "kvmconf-guest: " for the host to
 * parse. Whatever happens, it ends by powering the machine off, so QEMU exits.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MARK "kvmconf-guest: "
#define SCRIPT "/kvmconf/script"

static void say(const char *fmt, ...)
{
	char line[4096];
	va_list ap;
	int n = snprintf(line, sizeof(line), MARK);

	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(1, line, n) < 0)
		return;
}

static void power_off(void)
{
	sync();
	reboot(RB_POWER_OFF);
	reboot(RB_AUTOBOOT); /* QEMU runs with -no-reboot: a reset ends it too */
	for (;;)
		pause();
}

static char *slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);
	ssize_t r;

	if (fd < 0 || !buf)
		return NULL;
	while ((r = read(fd, buf + n, cap - n - 1)) > 0) {
		n += r;
		if (n + 1 == cap && !(buf = realloc(buf, cap *= 2)))
			return NULL;
	}
	close(fd);
	buf[n] = '\0';
	*len = n;
	return buf;
}

static int cpu_has(const char *flag)
{
	size_t len;
	char *info = slurp("/proc/cpuinfo", &len);
	char *line, *end, *tok, *save;
	int found = 0;

	if (!info)
		return 0;
	line = strstr(info, "\nflags");
	if (line) {
		end = strchr(line + 1, '\n');
		if (end)
			*end = '\0';
		line = strchr(line, ':');
		for (tok = line ? strtok_r(line + 1, " \t", &save) : NULL; tok && !found;
		     tok = strtok_r(NULL, " \t", &save))
			found = strcmp(tok, flag) == 0;
	}
	free(info);
	return found;
}

static void mkdir_p(const char *path)
{
	char buf[4096];
	char *p;

	snprintf(buf, sizeof(buf), "%s", path);
	for (p = buf + 1; *p; p++) {
		if (*p == '/') {
			*p = '\0';
			mkdir(buf, 0755);
			*p = '/';
		}
	}
	mkdir(buf, 0755);
}

static void load_module(const char *name, const char *path, const char *cpu_flag)
{
	int fd;

	if (*cpu_flag && !cpu_has(cpu_flag)) {
		say("module-skipped %s: cpu has no %s", name, cpu_flag);
		return;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || (syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST))
		say("module-failed %s: %s", name, strerror(errno));
	else
		say("module %s", name);
	if (fd >= 0)
		close(fd);
}

static void need(const char *path)
{
	struct timespec tick = { 0, 50 * 1000 * 1000 };
	struct stat st;
	int i;

	/* devtmpfs creates the node as the driver registers it: allow it a moment */
	for (i = 0; i < 40; i++) {
		if (stat(path, &st) == 0) {
			say("found %s", path);
			return;
		}
		nanosleep(&tick, NULL);
	}
	say("missing %s", path);
	power_off();
}

static void do_mount(char **t)
{
	/* t: label source target fstype flags data */
	unsigned long flags = strtoul(t[4], NULL, 10);

	if (mount(t[1], t[2], *t[3] ? t[3] : NULL, flags, *t[5] ? t[5] : NULL) != 0) {
		say("mount-failed %s %s: %s", t[0], t[2], strerror(errno));
		power_off();
	}
}

static void switch_root(const char *path)
{
	if (chdir(path) != 0 || mount(".", "/", NULL, MS_MOVE, NULL) != 0 || chroot(".") != 0 ||
	    chdir("/") != 0) {
		say("switch-root-failed %s: %s", path, strerror(errno));
		power_off();
	}
}

static void report_taint(void)
{
	size_t len;
	char *taint = slurp("/proc/sys/kernel/tainted", &len);

	if (taint) {
		say("tainted %ld", strtol(taint, NULL, 10));
		free(taint);
	}
}

static void run(char **argv, char **envp)
{
	pid_t child = fork(), pid;
	int status = 0, null;

	if (child < 0) {
		say("exec-failed %s: fork: %s", argv[0], strerror(errno));
		power_off();
	}
	if (child == 0) {
		null = open("/dev/null", O_RDONLY);
		if (null >= 0)
			dup2(null, 0);
		execve(argv[0], argv, envp);
		say("exec-failed %s: %s", argv[0], strerror(errno));
		_exit(127);
	}
	say("run %s", argv[0]);
	/* as PID 1, reap every orphan too, until the command itself is done */
	while ((pid = wait(&status)) != child)
		if (pid < 0 && errno != EINTR)
			break;
	if (WIFSIGNALED(status))
		say("signal %d", WTERMSIG(status));
	else
		say("exit %d", WEXITSTATUS(status));
	report_taint();
	power_off();
}

int main(void)
{
	struct utsname uts;
	size_t len, nargs = 0, nenv = 0, count = 0, i;
	char *script, *p, **tok, **argv, **envp;

	uname(&uts);
	say("release %s", uts.release);
	script = slurp(SCRIPT, &len);
	if (!script) {
		say("script-missing %s: %s", SCRIPT, strerror(errno));
		power_off();
	}
	for (p = script; p < script + len; p += strlen(p) + 1)
		count++;
	tok = calloc(count + 1, sizeof(*tok));
	argv = calloc(count + 1, sizeof(*argv));
	envp = calloc(count + 1, sizeof(*envp));
	for (i = 0, p = script; p < script + len; p += strlen(p) + 1)
		tok[i++] = p;

	for (i = 0; i < count;) {
		char *op = tok[i++];

		if (!strcmp(op, "mount") && i + 6 <= count) {
			do_mount(tok + i);
			i += 6;
		} else if (!strcmp(op, "mkdir") && i + 1 <= count) {
			mkdir_p(tok[i++]);
		} else if (!strcmp(op, "module") && i + 3 <= count) {
			load_module(tok[i], tok[i + 1], tok[i + 2]);
			i += 3;
		} else if (!strcmp(op, "need") && i + 1 <= count) {
			need(tok[i++]);
		} else if (!strcmp(op, "switch-root") && i + 1 <= count) {
			switch_root(tok[i++]);
		} else if (!strcmp(op, "chdir") && i + 1 <= count) {
			if (chdir(tok[i]) != 0) {
				say("chdir-failed %s: %s", tok[i], strerror(errno));
				power_off();
			}
			i++;
		} else if (!strcmp(op, "env") && i + 1 <= count) {
			envp[nenv++] = tok[i++];
		} else if (!strcmp(op, "arg") && i + 1 <= count) {
			argv[nargs++] = tok[i++];
		} else if (!strcmp(op, "run") && nargs > 0) {
			run(argv, envp);
		} else {
			say("script-error at token %zu: %s", i - 1, op);
			power_off();
		}
	}
	say("script-error: no run");
	power_off();
	return 0;
}
