// Package schema validates libvirt XML documents (domains, networks,
// storage pools and storage volumes) strictly: every element and attribute
// must be one libvirt 9.0 accepts, every value must have the right type, and
// the semantic rules libvirt's parsers enforce (units, UUIDs, names, memory
// and vCPU limits, addresses) must hold. Errors carry file:line:col.
package schema
