// Package schema validates libvirt XML documents (domains, networks,
// storage pools and storage volumes) strictly, as libvirt 9.0's
// "virsh define --validate" does: every element and attribute must be one
// libvirt 9.0's RNG schemas accept, every value must have the right type,
// and the semantic rules libvirt's parsers enforce must hold (sizes and
// their units, UUIDs, names, vCPU counts, memory, duplicate disk targets,
// MAC addresses, IP prefixes and netmasks, DHCP ranges, pool targets,
// volume capacity). All errors of a document are reported, each with
// file:line:col, what is wrong, what is allowed and, for near misses, a
// suggestion:
//
//	vm.xml:12:5: element <vpcu> is not allowed in <domain>; did you mean <vcpu>?
//
// Parse keeps the document as an etree tree (comments, attribute order and
// whitespace intact, so it can be written back) and remembers where each
// element started; Document.Validate checks it:
//
//	d, err := schema.Parse("vm.xml", data) // err: an ErrorList for malformed XML
//	if err != nil { ... }
//	if errs := d.Validate(); errs != nil { ... } // ErrorList, sorted by position
//	for _, w := range d.Warnings() { ... } // accepted by libvirt, but changed or suspicious
//
// The vocabulary lives in one rule table per kind (domain_rules.go,
// network_rules.go, pool_rules.go, volume_rules.go), written in a small
// indented notation described in table.go and checked by a small engine
// (engine.go). Requirements that depend on a type attribute are in
// variants.go, the parser's semantic checks in semantics.go. The tables
// are tested against xmllint and libvirt's own schemas
// (/usr/share/libvirt/schemas) over the examples and thousands of mutated
// documents.
package schema
