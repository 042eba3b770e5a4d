package shell

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"vsh/hypervisor/driver"
)

// vol-upload and vol-download: volume contents to and from local files.

func init() {
	handlers["vol-upload"] = cmdVolUpload
	handlers["vol-download"] = cmdVolDownload
	// Both belong among virsh's definitions, in virsh's help order.
	insertCommand(&Command{Name: "vol-download", Group: "volume", Brief: "download volume contents to a file",
		Synopsis: "<vol> <file> [--pool <string>] [--offset <number>] [--length <number>] [--sparse]", Description: "Download volume contents to a file",
		Options: transferOptions("volume offset to download from", "amount of data to download")}, "vol-delete")
	insertCommand(&Command{Name: "vol-upload", Group: "volume", Brief: "upload file contents to a volume",
		Synopsis: "<vol> <file> [--pool <string>] [--offset <number>] [--length <number>] [--sparse]", Description: "Upload file contents to a volume",
		Options: transferOptions("volume offset to upload to", "amount of data to upload")}, "vol-resize")
}

func transferOptions(offsetHelp, lengthHelp string) []Option {
	return []Option{
		{Name: "vol", Kind: KindData, Required: true, Label: "[--vol] <string>", Help: "vol name, key or path"},
		{Name: "file", Kind: KindData, Required: true, Label: "[--file] <string>", Help: "file"},
		{Name: "pool", Kind: KindString, Label: "--pool <string>", Help: "pool name or uuid"},
		{Name: "offset", Kind: KindInt, Label: "--offset <number>", Help: offsetHelp},
		{Name: "length", Kind: KindInt, Label: "--length <number>", Help: lengthHelp},
		{Name: "sparse", Kind: KindBool, Label: "--sparse", Help: "preserve sparseness of volume"},
	}
}

// insertCommand adds c to virshCommands after the command named after,
// unless a definition of c exists already.
func insertCommand(c *Command, after string) {
	at := len(virshCommands)
	for i, x := range virshCommands {
		if x.Name == c.Name {
			return
		}
		if x.Name == after {
			at = i + 1
		}
	}
	virshCommands = append(virshCommands[:at], append([]*Command{c}, virshCommands[at:]...)...)
}

// transferArgs parses --offset and --length like virsh: the offset is an
// unsigned number, the length may be negative and then wraps (-1: all).
func transferArgs(c *Call) (driver.VolumeTransfer, error) {
	t := driver.VolumeTransfer{Sparse: c.Has("sparse")}
	if c.Has("offset") {
		v := c.Str("offset")
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || strings.HasPrefix(v, "+") {
			return t, fail(nil, "Numeric value '%s' for <offset> option is malformed or out of range", v)
		}
		t.Offset = n
	}
	if c.Has("length") {
		v := c.Str("length")
		n, err := strconv.ParseUint(v, 10, 64)
		if strings.HasPrefix(v, "-") {
			var s int64
			s, err = strconv.ParseInt(v, 10, 64)
			n = uint64(s)
		}
		if err != nil || strings.HasPrefix(v, "+") {
			return t, fail(nil, "Numeric value '%s' for <length> option is malformed or out of range", v)
		}
		if n > 1<<62 {
			n = 0 // a wrapped negative length: everything
		}
		t.Length = n
	}
	return t, nil
}

func cmdVolUpload(s *Shell, c *Call) error {
	t, err := transferArgs(c)
	if err != nil {
		return err
	}
	v, err := s.lookupVol(c)
	if err != nil {
		return err
	}
	name, file := c.Str("vol"), c.Str("file")
	f, err := os.Open(file)
	if err != nil {
		return fail(nil, "cannot read %s", file)
	}
	defer f.Close()
	total := t.Length
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && total == 0 {
		total = uint64(fi.Size())
	}
	bar := s.progressBar("Upload", total)
	t.Progress = bar.update
	err = s.conn.UploadVolume(v, f, t)
	bar.finish(err == nil)
	if err != nil {
		return fail(err, "cannot upload to volume %s", name)
	}
	return nil
}

func cmdVolDownload(s *Shell, c *Call) error {
	t, err := transferArgs(c)
	if err != nil {
		return err
	}
	v, err := s.lookupVol(c)
	if err != nil {
		return err
	}
	name, file := c.Str("vol"), c.Str("file")
	created := true
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
	if errors.Is(err, fs.ErrExist) {
		created = false
		f, err = os.OpenFile(file, os.O_WRONLY|os.O_TRUNC, 0o666)
	}
	if err != nil {
		return fail(nil, "cannot create %s", file)
	}
	total := t.Length
	if total == 0 && v.Type == "file" {
		if fi, err := os.Stat(v.Path); err == nil && uint64(fi.Size()) > t.Offset {
			total = uint64(fi.Size()) - t.Offset
		}
	}
	bar := s.progressBar("Download", total)
	t.Progress = bar.update
	err = s.conn.DownloadVolume(v, f, t)
	bar.finish(err == nil)
	if err != nil {
		f.Close()
		if created {
			os.Remove(file)
		}
		return fail(err, "cannot download from volume %s", name)
	}
	if err := f.Close(); err != nil {
		if created {
			os.Remove(file)
		}
		return fail(nil, "Unable to close %s", file)
	}
	return nil
}

// progress draws a transfer's progress bar on stderr when stderr is a
// terminal; otherwise it prints nothing.
type progress struct {
	w     io.Writer // nil: no bar
	label string
	total uint64
	shown int // last drawn permille, -1 before the first
}

func (s *Shell) progressBar(label string, total uint64) *progress {
	p := &progress{label: label, total: total, shown: -1}
	if f, ok := s.Stderr.(*os.File); ok && isTerminal(f) {
		p.w = f
	}
	return p
}

// progressLine renders one state of the bar: "Upload: [=====>    ]  50.0 %".
func progressLine(label string, done, total uint64) string {
	const width = 30
	if total == 0 {
		return fmt.Sprintf("\r%s: %s", label, prettyCapacity(done))
	}
	done = min(done, total)
	fill := int(done * width / total)
	bar := strings.Repeat("=", fill)
	if fill < width {
		bar += ">" + strings.Repeat(" ", width-fill-1)
	}
	return fmt.Sprintf("\r%s: [%s] %5.1f %%", label, bar, float64(done)*100/float64(total))
}

func (p *progress) update(done, total uint64) {
	if p.w == nil {
		return
	}
	if p.total == 0 {
		p.total = total
	}
	permille := 0
	if p.total > 0 {
		permille = int(min(done, p.total) * 1000 / p.total)
	} else {
		permille = int(done >> 20) // redraw per MiB when the total is unknown
	}
	if permille == p.shown {
		return
	}
	p.shown = permille
	fmt.Fprint(p.w, progressLine(p.label, done, p.total))
}

// finish completes the bar's line.
func (p *progress) finish(ok bool) {
	if p.w == nil || p.shown < 0 && !ok {
		return
	}
	if ok && p.total > 0 {
		fmt.Fprint(p.w, progressLine(p.label, p.total, p.total))
	}
	fmt.Fprintln(p.w)
}
