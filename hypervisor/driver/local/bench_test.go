package local

import (
	"os"
	"strconv"
	"testing"

	"vsh/hypervisor/driver"
)

// benchConn returns a connection with n defined domains.
func benchConn(b *testing.B, n int) driver.Conn {
	b.Helper()
	c := openTemp(b)
	for i := 0; i < n; i++ {
		name := "bench" + strconv.Itoa(i)
		if _, err := c.DefineDomain([]byte(vmXML(name)), name+".xml", false); err != nil {
			b.Fatal(err)
		}
	}
	return c
}

// BenchmarkListDomains1000 is list --all's driver call with 1000 defined
// domains and a warm index.
func BenchmarkListDomains1000(b *testing.B) {
	c := fastConn(b, 1000)
	if l, err := c.ListDomains(); err != nil || len(l) != 1000 {
		b.Fatalf("list: %d %v", len(l), err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.ListDomains(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkListDomains1000Cold lists with the index removed each time:
// the cost of parsing all 1000 definitions.
func BenchmarkListDomains1000Cold(b *testing.B) {
	c := fastConn(b, 1000)
	conn := c.(*Conn)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		removeFile(conn.indexPath())
		if _, err := c.ListDomains(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLookupDomain1000 is dominfo's lookup by name among 1000.
func BenchmarkLookupDomain1000(b *testing.B) {
	c := fastConn(b, 1000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.LookupDomain("bench500"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLookupDomainUUID1000 looks a domain up by UUID among 1000.
func BenchmarkLookupDomainUUID1000(b *testing.B) {
	c := fastConn(b, 1000)
	d, _ := c.LookupDomain("bench500")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.LookupDomain(d.UUID); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDefineDomain is one define (parse, lock, duplicate checks,
// fsynced atomic write) with 1000 others present.
func BenchmarkDefineDomain(b *testing.B) {
	c := fastConn(b, 1000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.DefineDomain([]byte(vmXML("bench500")), "x.xml", false); err == nil {
			continue
		}
	}
}

// fastConn returns a connection with n definitions written straight to
// disk (the benchmarks of define itself cover that path).
func fastConn(b *testing.B, n int) driver.Conn {
	b.Helper()
	c := openTemp(b)
	conn := c.(*Conn)
	for i := 0; i < n; i++ {
		name := "bench" + strconv.Itoa(i)
		def, err := parseDomain(name+".xml", []byte(vmXML(name)), false)
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(conn.defPath(name), def.XML(), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	return c
}
