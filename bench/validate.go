package main

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// validateDocuments is how many domain documents figure 5 validates.
const validateDocuments = 1000

// domainRNG is libvirt's domain schema from Debian's libvirt0.
const domainRNG = "/usr/share/libvirt/schemas/domain.rng"

var nameRE = regexp.MustCompile(`<name>[^<]*</name>`)

// figureValidate is figure 5: the same libvirt-style domain documents
// through `vsh validate` (one process) and `xmllint --relaxng`.
func figureValidate(e *env) []Row {
	row := Row{
		Figure:      fmt.Sprintf("5. validate %d domain documents, one process", validateDocuments),
		Unit:        "ms",
		LowerBetter: true,
		PeerName:    "xmllint --noout --relaxng domain.rng",
	}
	templates, err := domainTemplates(filepath.Join(e.root, "examples", "domains"))
	if err != nil {
		return failedRows(err, row.Figure)
	}
	dir := filepath.Join(e.tmp, "validate")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return failedRows(err, row.Figure)
	}
	var files []string
	for i := 0; i < validateDocuments; i++ {
		name := fmt.Sprintf("doc%04d", i)
		t := templates[i%len(templates)]
		doc := nameRE.ReplaceAllLiteralString(t.text, "<name>"+name+"</name>")
		file := filepath.Join(dir, name+".xml")
		if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
			return failedRows(err, row.Figure)
		}
		files = append(files, file)
	}
	var names []string
	for _, t := range templates {
		names = append(names, t.name)
	}
	row.Conditions = fmt.Sprintf("copies of examples/domains/{%s} with unique names; both tools must accept every file; wall time of the process", strings.Join(names, ","))

	xmllint, xmlErr := exec.LookPath("xmllint")
	_, rngErr := os.Stat(domainRNG)
	for i := 0; i < e.runs; i++ {
		d, err := timeCommand(e.vsh, append([]string{"validate"}, files...)...)
		row.VSH = addSample(row.VSH, durationMs(d), err)
		if xmlErr == nil && rngErr == nil {
			d, err := timeCommand(xmllint, append([]string{"--noout", "--relaxng", domainRNG}, files...)...)
			row.Peer = addSample(row.Peer, durationMs(d), err)
		}
	}
	switch {
	case xmlErr != nil:
		row.Peer = Result{Missing: installHint("xmllint", "libxml2-utils")}
	case rngErr != nil:
		row.Peer = Result{Missing: "libvirt's schemas missing (" + domainRNG + "): apt-get install libvirt0"}
	}
	return []Row{row}
}

// template is an example domain document.
type template struct {
	name, text string
}

// domainTemplates returns the domain documents among the examples.
func domainTemplates(dir string) ([]template, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.xml"))
	if err != nil {
		return nil, err
	}
	var t []template
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		if rootElement(data) == "domain" && nameRE.Match(data) {
			t = append(t, template{name: strings.TrimSuffix(filepath.Base(p), ".xml"), text: string(data)})
		}
	}
	if len(t) == 0 {
		return nil, fmt.Errorf("no domain documents in %s", dir)
	}
	return t, nil
}

// rootElement returns the name of a document's root element, "" if it
// has none.
func rootElement(data []byte) string {
	d := xml.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := d.Token()
		if err != nil {
			return ""
		}
		if se, ok := tok.(xml.StartElement); ok {
			return se.Name.Local
		}
	}
}

// timeCommand runs a command to completion and returns its wall time; a
// non-zero exit is an error carrying the first line of its stderr.
func timeCommand(path string, args ...string) (time.Duration, error) {
	cmd := exec.Command(path, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return d, fmt.Errorf("%s: %w: %s", filepath.Base(path), err, firstLine(stderr.String()))
	}
	return d, nil
}
