#!/bin/bash
# build.sh [OUTDIR] - build the vsh guest kit: a minimal Linux kernel
# (vmlinux + bzImage) from Debian's linux-source-6.1 and a busybox
# initramfs (initramfs.cpio.gz) running busybox init, cached outside the
# repository.
#
# Outputs in OUTDIR (default /var/cache/vsh/guest for root, else
# ${XDG_CACHE_HOME:-$HOME/.cache}/vsh/guest):
#   vmlinux            uncompressed ELF64 kernel (what vsh loads on slow hosts)
#   bzImage            the same kernel, self-decompressing
#   kernel.config      the final .config
#   initramfs.cpio     busybox rootfs with /init, uncompressed (nothing for
#                      the guest to gunzip in ring 0, slow on PVM hosts)
#   initramfs.cpio.gz  the same, gzip -9 -n
# Each part is rebuilt only when its key (sha256 of this script, its inputs
# and the Debian package versions) changes.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ $# -ge 1 ]; then
	out=$1
elif [ "$(id -u)" = 0 ]; then
	out=/var/cache/vsh/guest
else
	out=${XDG_CACHE_HOME:-$HOME/.cache}/vsh/guest
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)

log() { printf 'guest/build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# One builder at a time per cache directory; others wait and then find the
# outputs up to date.
exec 9>"$out/.lock"
flock 9

pkgver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true; }

need_pkgs=()
for p in linux-source-6.1 flex bison bc libelf-dev libssl-dev lz4 busybox-static gcc make; do
	[ -n "$(pkgver "$p")" ] || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
	[ "$(id -u)" = 0 ] || die "missing Debian packages (install as root): ${need_pkgs[*]}"
	while pgrep -x 'apt|apt-get|dpkg' >/dev/null; do
		log "waiting for a running apt/dpkg to finish"
		sleep 5
	done
	log "installing ${need_pkgs[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y "${need_pkgs[@]}" >&2
fi

srcver=$(pkgver linux-source-6.1)
bbver=$(pkgver busybox-static)
gccver=$(gcc -dumpfullversion)
script_sum=$(sha256sum "$here/build.sh" | cut -d' ' -f1)

kernel_key=$( {
	echo "script $script_sum"
	echo "linux-source-6.1 $srcver"
	echo "gcc $gccver"
	cat "$here/kernel.config"
} | sha256sum | cut -d' ' -f1)
initramfs_key=$( {
	echo "script $script_sum"
	echo "busybox-static $bbver"
	echo "linux-source-6.1 $srcver" # gen_init_cpio comes from it
	(cd "$here/rootfs" && find . -print0 | LC_ALL=C sort -z | xargs -0 stat -c '%n %a' &&
		find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
} | sha256sum | cut -d' ' -f1)

up_to_date() { # stamp-name key files...
	local stamp=$out/$1.key key=$2
	shift 2
	[ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ] || return 1
	for f in "$@"; do [ -s "$out/$f" ] || return 1; done
}

# Reproducible build metadata.
export KBUILD_BUILD_TIMESTAMP='1970-01-01 00:00:00 UTC'
export KBUILD_BUILD_USER=vsh KBUILD_BUILD_HOST=vsh KBUILD_BUILD_VERSION=1
export SOURCE_DATE_EPOCH=0 LC_ALL=C TZ=UTC

# The extracted source tree is kept per linux-source version so that a
# changed config fragment rebuilds incrementally.
tree=$out/src/linux-source-6.1-$srcver
prepare_tree() {
	[ -f "$tree/.vsh-extracted" ] && return
	rm -rf "$out/src"
	mkdir -p "$out/src/tmp"
	log "extracting /usr/src/linux-source-6.1.tar.xz"
	tar -C "$out/src/tmp" -xf /usr/src/linux-source-6.1.tar.xz
	mv "$out/src/tmp/linux-source-6.1" "$tree"
	rmdir "$out/src/tmp"
	touch "$tree/.vsh-extracted"
}

install_atomic() { # src dst-name
	cp "$1" "$out/.$2.tmp"
	mv -f "$out/.$2.tmp" "$out/$2"
}

start=$(date +%s)

if up_to_date kernel "$kernel_key" vmlinux bzImage kernel.config; then
	log "kernel up to date ($out/vmlinux)"
else
	prepare_tree
	jobs=$(nproc)
	log "configuring kernel (tinyconfig + guest/kernel.config)"
	make -C "$tree" -s ARCH=x86_64 tinyconfig >&2
	(cd "$tree" && KCONFIG_CONFIG=.config ./scripts/kconfig/merge_config.sh -m .config "$here/kernel.config" >&2)
	make -C "$tree" -s ARCH=x86_64 olddefconfig >&2
	missing=()
	while IFS= read -r line; do
		case $line in
		CONFIG_*=y) grep -qx "$line" "$tree/.config" || missing+=("$line") ;;
		"# CONFIG_"*" is not set")
			sym=${line#\# }
			sym=${sym%% *}
			if grep -q "^$sym=" "$tree/.config"; then missing+=("$line"); fi
			;;
		esac
	done < "$here/kernel.config"
	[ ${#missing[@]} -eq 0 ] || die "kconfig did not honour: ${missing[*]}"
	log "building kernel with -j$jobs (several minutes)"
	make -C "$tree" -s ARCH=x86_64 -j"$jobs" vmlinux bzImage >&2
	install_atomic "$tree/vmlinux" vmlinux
	install_atomic "$tree/arch/x86/boot/bzImage" bzImage
	install_atomic "$tree/.config" kernel.config
	echo "$kernel_key" > "$out/kernel.key"
fi

if up_to_date initramfs "$initramfs_key" initramfs.cpio initramfs.cpio.gz; then
	log "initramfs up to date ($out/initramfs.cpio.gz)"
else
	prepare_tree
	gic=$out/gen_init_cpio
	gcc -O2 -o "$gic" "$tree/usr/gen_init_cpio.c"
	bb=/bin/busybox
	[ "$(dpkg -S "$bb" 2>/dev/null | cut -d: -f1)" = busybox-static ] ||
		die "$bb is not from busybox-static"
	# Stage every file with a fixed mtime: gen_init_cpio records file
	# mtimes as they are (-t only covers directories, nodes and links).
	stage=$out/stage
	rm -rf "$stage"
	mkdir -p "$stage"
	cp "$bb" "$stage/busybox"
	cp -r "$here/rootfs" "$stage/rootfs"
	echo 'root:x:0:0:root:/root:/bin/sh' > "$stage/passwd"
	echo 'root:x:0:' > "$stage/group"
	find "$stage" -exec touch -h -d @0 {} +
	list=$out/initramfs.list
	{
		for d in bin sbin usr usr/bin usr/sbin dev proc sys tmp run etc root; do
			echo "dir /$d 0755 0 0"
		done
		echo "nod /dev/console 0600 0 0 c 5 1"
		echo "nod /dev/null 0666 0 0 c 1 3"
		echo "nod /dev/ttyS0 0600 0 0 c 4 64"
		echo "file /bin/busybox $stage/busybox 0755 0 0"
		# /init is busybox's init (argv[0] "init"), configured by
		# rootfs/etc/inittab.
		echo "slink /init /bin/busybox 0777 0 0"
		# Every applet as a symlink where busybox would install it.
		"$bb" --list-full | LC_ALL=C sort | while read -r app; do
			[ "$app" = bin/busybox ] && continue
			echo "slink /$app /bin/busybox 0777 0 0"
		done
		(cd "$stage/rootfs" && find . -mindepth 1 | LC_ALL=C sort) | while read -r p; do
			p=${p#.}
			src=$stage/rootfs$p
			mode=$(stat -c %a "$src")
			if [ -d "$src" ]; then
				echo "dir $p 0$mode 0 0"
			else
				echo "file $p $src 0$mode 0 0"
			fi
		done
		echo "file /etc/passwd $stage/passwd 0644 0 0"
		echo "file /etc/group $stage/group 0644 0 0"
	} | awk '!seen[$1" "$2]++' > "$list"
	"$gic" -t 0 "$list" > "$out/.initramfs.cpio.tmp"
	gzip -9 -n < "$out/.initramfs.cpio.tmp" > "$out/.initramfs.cpio.gz.tmp"
	mv -f "$out/.initramfs.cpio.tmp" "$out/initramfs.cpio"
	mv -f "$out/.initramfs.cpio.gz.tmp" "$out/initramfs.cpio.gz"
	echo "$initramfs_key" > "$out/initramfs.key"
fi

log "done in $(( $(date +%s) - start ))s: $out/{vmlinux,bzImage,initramfs.cpio,initramfs.cpio.gz}"
