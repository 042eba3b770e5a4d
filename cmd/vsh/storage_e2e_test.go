package main

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// localEnv is testEnv with the vsh:/// driver as default connection.
func localEnv(t *testing.T) []string {
	return append(testEnv(t), "VSH_DEFAULT_URI=vsh:///session")
}

// vshOK runs vsh and fails the test unless it succeeds.
func vshOK(t *testing.T, env []string, args ...string) string {
	t.Helper()
	r := run(t, env, "", vshBin, args...)
	if r.rc != 0 {
		t.Fatalf("vsh %s: rc %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.rc, r.stdout, r.stderr)
	}
	return r.stdout
}

// poolEnv returns an environment whose vsh:///session has an active dir
// pool "default-pool" in a temporary directory.
func poolEnv(t *testing.T) ([]string, string) {
	env := localEnv(t)
	dir := filepath.Join(t.TempDir(), "pool")
	vshOK(t, env, "-q", "pool-define-as default-pool dir --target "+dir+"; pool-build default-pool; pool-start default-pool")
	return env, dir
}

// TestVolumeCommandsQcow2 creates qcow2 volumes with vsh and checks them
// with qemu-img where it is installed.
func TestVolumeCommandsQcow2(t *testing.T) {
	env, dir := poolEnv(t)
	if out := vshOK(t, env, "vol-create-as", "default-pool", "x", "10M", "--format", "qcow2"); out != "Vol x created\n\n" {
		t.Errorf("vol-create-as output %q", out)
	}
	info := vshOK(t, env, "vol-info", "x", "--pool", "default-pool")
	if !strings.Contains(info, "Capacity:       10.00 MiB\n") || !strings.Contains(info, "Type:           file\n") {
		t.Errorf("vol-info:\n%s", info)
	}
	vshOK(t, env, "-q", "vol-create-as default-pool base 20M --format qcow2; vol-create-as default-pool ov 0 --format qcow2 --backing-vol base; vol-clone ov ov2 --pool default-pool")
	xml := vshOK(t, env, "vol-dumpxml", "ov", "--pool", "default-pool")
	for _, want := range []string{"<capacity unit='bytes'>20971520</capacity>", "<format type='qcow2'/>",
		"<backingStore>\n    <path>" + filepath.Join(dir, "base") + "</path>\n    <format type='qcow2'/>\n  </backingStore>"} {
		if !strings.Contains(xml, want) {
			t.Errorf("vol-dumpxml lacks %q:\n%s", want, xml)
		}
	}
	if xml := vshOK(t, env, "vol-dumpxml", filepath.Join(dir, "ov2")); !strings.Contains(xml, "<path>"+filepath.Join(dir, "ov")+"</path>\n    <format type='qcow2'/>\n  </backingStore>") {
		t.Errorf("vol-clone of a qcow2 volume is not an overlay:\n%s", xml)
	}
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed: apt-get install qemu-utils")
	}
	for _, v := range []string{"x", "base", "ov", "ov2"} {
		if out, err := exec.Command("qemu-img", "check", filepath.Join(dir, v)).CombinedOutput(); err != nil {
			t.Errorf("qemu-img check %s: %v\n%s", v, err, out)
		}
	}
	out, err := exec.Command("qemu-img", "info", filepath.Join(dir, "ov")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "backing file: "+filepath.Join(dir, "base")+"\n") ||
		!strings.Contains(string(out), "backing file format: qcow2\n") {
		t.Errorf("qemu-img info ov: %v\n%s", err, out)
	}
}

// TestVolumeUploadDownload round-trips a sparse file through vol-upload
// and vol-download and checks virsh's error texts.
func TestVolumeUploadDownload(t *testing.T) {
	env, _ := poolEnv(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src.img")
	data := make([]byte, 300<<10)
	rand.Read(data)
	f, _ := os.Create(src)
	f.Write(data)
	f.WriteAt([]byte("tail"), 8<<20-4)
	f.Close()
	want, _ := os.ReadFile(src)
	vshOK(t, env, "-q", "vol-create-as", "default-pool", "r", "8M")
	for _, sparse := range []string{"", "--sparse"} {
		out := filepath.Join(tmp, "out"+sparse)
		r := run(t, env, "", vshBin, "vol-upload r "+src+" --pool default-pool "+sparse+"; vol-download r "+out+" --pool default-pool "+sparse)
		if r.rc != 0 || r.stderr != "" || r.stdout != "\n\n" {
			t.Fatalf("upload/download %s: rc %d\nstdout %q\nstderr %q", sparse, r.rc, r.stdout, r.stderr)
		}
		if got, _ := os.ReadFile(out); !bytes.Equal(got, want) {
			t.Errorf("download %s differs from the upload", sparse)
		}
	}
	part := filepath.Join(tmp, "part")
	vshOK(t, env, "vol-download", "r", part, "--pool", "default-pool", "--offset", "1000", "--length", "24")
	if got, _ := os.ReadFile(part); !bytes.Equal(got, want[1000:1024]) {
		t.Errorf("partial download %x", got)
	}

	for _, tc := range []struct{ cmd, stderr string }{
		{"vol-upload nosuch " + src + " --pool default-pool",
			"error: failed to get vol 'nosuch'\nerror: Storage volume not found: no storage vol with matching name 'nosuch'\n"},
		{"vol-upload r /nonexistent --pool default-pool", "error: cannot read /nonexistent\n"},
		{"vol-upload r " + src + " --pool default-pool --offset -1",
			"error: Numeric value '-1' for <offset> option is malformed or out of range\n"},
		{"vol-download r /nonexistent/x --pool default-pool", "error: cannot create /nonexistent/x\n"},
		{"vol-download r " + filepath.Join(tmp, "past") + " --pool default-pool --offset 9000000",
			"error: cannot download from volume r\nerror: operation failed: download from volume 'r': offset 9000000 is beyond its size 8388608\n"},
		{"-r vol-upload r " + src + " --pool default-pool",
			"error: cannot upload to volume r\nerror: operation forbidden: read only access prevents virStorageVolUpload\n"},
	} {
		r := run(t, env, "", vshBin, strings.Fields(tc.cmd)...)
		if r.rc != 1 || r.stderr != tc.stderr {
			t.Errorf("%s: rc %d\nstderr %q\nwant   %q", tc.cmd, r.rc, r.stderr, tc.stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(tmp, "past")); !os.IsNotExist(err) {
		t.Errorf("failed vol-download left its file: %v", err)
	}
}

// TestVolumeTransferTestDriver checks that test:///default refuses
// transfers with the texts of virsh -c test:///default.
func TestVolumeTransferTestDriver(t *testing.T) {
	env := testEnv(t)
	src := filepath.Join(t.TempDir(), "f")
	os.WriteFile(src, []byte("data"), 0o600)
	r := run(t, env, "", vshBin, "-q", "vol-create-as default-pool x 10M; vol-upload x "+src+" --pool default-pool; vol-download x "+src+".out --pool default-pool")
	want := "error: cannot upload to volume x\nerror: this function is not supported by the connection driver: virStorageVolUpload\n" +
		"error: cannot download from volume x\nerror: this function is not supported by the connection driver: virStorageVolDownload\n"
	if r.rc != 1 || r.stderr != want {
		t.Errorf("rc %d, stderr:\n%s\nwant:\n%s", r.rc, r.stderr, want)
	}
	if _, err := os.Stat(src + ".out"); !os.IsNotExist(err) {
		t.Errorf("failed vol-download left its file: %v", err)
	}
}

// TestVolumeTransferHelp compares the help of the transfer commands with
// virsh 9.0's.
func TestVolumeTransferHelp(t *testing.T) {
	want := `  NAME
    vol-upload - upload file contents to a volume

  SYNOPSIS
    vol-upload <vol> <file> [--pool <string>] [--offset <number>] [--length <number>] [--sparse]

  DESCRIPTION
    Upload file contents to a volume

  OPTIONS
    [--vol] <string>  vol name, key or path
    [--file] <string>  file
    --pool <string>  pool name or uuid
    --offset <number>  volume offset to upload to
    --length <number>  amount of data to upload
    --sparse         preserve sparseness of volume

`
	if out := vshOK(t, testEnv(t), "help", "vol-upload"); out != want+"\n" && out != want {
		t.Errorf("help vol-upload:\n%q\nwant\n%q", out, want)
	}
	out := vshOK(t, testEnv(t), "help", "volume")
	if !strings.Contains(out, "    vol-delete                     delete a vol\n    vol-download                   download volume contents to a file\n") ||
		!strings.Contains(out, "    vol-resize                     resize a vol\n    vol-upload                     upload file contents to a volume\n") {
		t.Errorf("help volume:\n%s", out)
	}
}

// TestVolumeUploadProgress checks the progress bar on a terminal.
func TestVolumeUploadProgress(t *testing.T) {
	env, _ := poolEnv(t)
	src := filepath.Join(t.TempDir(), "src")
	os.WriteFile(src, bytes.Repeat([]byte("x"), 3<<20), 0o600)
	vshOK(t, env, "-q", "vol-create-as", "default-pool", "r", "4M")
	p := startPTY(t, env, "vol-upload", "r", src, "--pool", "default-pool")
	p.expect("Upload: [")
	p.expect("] 100.0 %")
	if err := p.wait(); err != nil {
		t.Fatalf("vol-upload on a terminal: %v\n%s", err, p.out.String())
	}
}

// TestPoolCapabilities checks pool-capabilities on both drivers: the
// local one lists what it supports, the test driver refuses as virsh -c
// test:///default does.
func TestPoolCapabilities(t *testing.T) {
	out := vshOK(t, localEnv(t), "pool-capabilities")
	for _, want := range []string{"<storagepoolCapabilities>\n", "<pool type='fs' supported='yes'>", "<value>qcow2</value>", "<pool type='logical' supported='no'/>"} {
		if !strings.Contains(out, want) {
			t.Errorf("pool-capabilities lacks %q:\n%s", want, out)
		}
	}
	r := run(t, testEnv(t), "", vshBin, "pool-capabilities")
	want := "error: failed to get storage pool capabilities\nerror: this function is not supported by the connection driver: virConnectGetStoragePoolCapabilities\n"
	if r.rc != 1 || r.stderr != want {
		t.Errorf("test driver: rc %d stderr %q", r.rc, r.stderr)
	}
}

// TestVolCreateAsAllocation checks that --allocation reaches the test
// driver: libvirt allocates the whole capacity only without it.
func TestVolCreateAsAllocation(t *testing.T) {
	out := vshOK(t, testEnv(t), "-q", "vol-create-as default-pool a 10M --allocation 1M; vol-info a --pool default-pool; vol-create-as default-pool b 10M; vol-info b --pool default-pool")
	if !strings.Contains(out, "Name:           a\nType:           file\nCapacity:       10.00 MiB\nAllocation:     1.00 MiB\n") ||
		!strings.Contains(out, "Name:           b\nType:           file\nCapacity:       10.00 MiB\nAllocation:     10.00 MiB\n") {
		t.Errorf("vol-info:\n%s", out)
	}
}
