#!/bin/sh
# Issues the certificates a secured FleetTwin cluster uses, with openssl (EC P-256 keys).
#
#   make-certs.sh DIR ca                      a new CA: DIR/ca.crt, DIR/ca.key
#   make-certs.sh DIR node NAME [SAN ...]     a node: DIR/NAME.crt, DIR/NAME.key, for gRPC
#                                             (server) and the cluster port (server and
#                                             client); SANs: DNS:NAME, DNS:localhost,
#                                             IP:127.0.0.1 and any given (DNS:x, IP:y)
#   make-certs.sh DIR client NAME             a client of the gRPC API (mutual TLS):
#                                             DIR/NAME.crt, DIR/NAME.key, with the SPIFFE id
#                                             spiffe://fleettwin/NAME as its identity
#
# DAYS (default 825) sets the validity. Keys are written mode 0600. For production, issue
# node and client certificates from your own PKI (cert-manager, Vault ...) instead: the
# node needs a certificate chain and key in PEM and the CA bundle of its peers and clients.
set -eu
usage() { sed -n '2,15p' "$0" >&2; exit 2; }
[ $# -ge 2 ] || usage
dir=$1; what=$2; shift 2
days=${DAYS:-825}
mkdir -p "$dir"
umask 077

issue() {  # name subject extensions
  name=$1; subject=$2; ext=$3
  [ -f "$dir/ca.crt" ] && [ -f "$dir/ca.key" ] || { echo "no CA in $dir: run '$0 $dir ca' first" >&2; exit 1; }
  openssl ecparam -name prime256v1 -genkey -noout -out "$dir/$name.key"
  openssl req -new -key "$dir/$name.key" -subj "$subject" -out "$dir/$name.csr"
  printf '%s\n' "$ext" > "$dir/$name.ext"
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -CAcreateserial -days "$days" -sha256 -extfile "$dir/$name.ext" -out "$dir/$name.crt" 2>/dev/null
  rm -f "$dir/$name.csr" "$dir/$name.ext"
  chmod 644 "$dir/$name.crt"
}

case $what in
  ca)
    openssl ecparam -name prime256v1 -genkey -noout -out "$dir/ca.key"
    openssl req -new -x509 -key "$dir/ca.key" -subj "/O=FleetTwin/CN=FleetTwin CA" \
      -days "$days" -sha256 -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$dir/ca.crt"
    chmod 644 "$dir/ca.crt"
    ;;
  node)
    [ $# -ge 1 ] || usage
    name=$1; shift
    san="DNS:$name,DNS:localhost,IP:127.0.0.1"
    for s in "$@"; do san="$san,$s"; done
    issue "$name" "/O=FleetTwin/CN=$name" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$san"
    ;;
  client)
    [ $# -eq 1 ] || usage
    name=$1
    issue "$name" "/O=FleetTwin/CN=$name" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
subjectAltName=URI:spiffe://fleettwin/$name"
    ;;
  *) usage ;;
esac
