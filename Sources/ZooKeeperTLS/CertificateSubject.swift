import Foundation
import SwiftASN1

/// The subject of an X.509 certificate written as ZooKeeper's x509 provider names the session
/// that shows it (Java's `X500Principal.getName()`, RFC 2253): the last RDN first, `CN=e1,O=Acme`.
/// A process learns its own ZooKeeper identity from the certificate it shows, without asking the
/// server (the C client has no whoami).
public enum CertificateSubject {
    /// The subject of the first certificate in a PEM file.
    /// - Throws: ``CertificateSubjectError`` when the file holds no certificate Drover can read.
    public static func rfc2253(ofPEMFile path: String) throws -> String {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw CertificateSubjectError("cannot read \(path): \(error.localizedDescription)")
        }
        guard let begin = text.range(of: "-----BEGIN CERTIFICATE-----"),
            let end = text.range(of: "-----END CERTIFICATE-----", range: begin.upperBound..<text.endIndex),
            let der = Data(base64Encoded: text[begin.upperBound..<end.lowerBound].filter { !$0.isWhitespace }.description)
        else {
            throw CertificateSubjectError("\(path) holds no PEM certificate")
        }
        do {
            return try rfc2253(ofDER: Array(der))
        } catch let error as CertificateSubjectError {
            throw error
        } catch {
            throw CertificateSubjectError("\(path): not an X.509 certificate (\(error))")
        }
    }

    /// The subject of a DER-encoded certificate.
    public static func rfc2253(ofDER der: [UInt8]) throws -> String {
        // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber,
        //   signature, issuer, validity, subject, … }, … }
        let certificate = try DER.parse(der)
        guard case .constructed(let certificateParts) = certificate.content, let tbs = certificateParts.first(where: { _ in true }),
            case .constructed(let tbsParts) = tbs.content
        else { throw CertificateSubjectError("not an X.509 certificate") }
        var fields = Array(tbsParts)
        if fields.first?.identifier.tagClass == .contextSpecific { fields.removeFirst() }  // [0] version
        guard fields.count > 4 else { throw CertificateSubjectError("not an X.509 certificate: too few fields") }
        return try name(fields[4])
    }

    /// A Name (SEQUENCE OF RelativeDistinguishedName) in RFC 2253's form.
    static func name(_ node: ASN1Node) throws -> String {
        guard case .constructed(let rdns) = node.content else { throw CertificateSubjectError("the subject is not a name") }
        var written: [String] = []
        for rdn in rdns {
            guard case .constructed(let attributes) = rdn.content else { throw CertificateSubjectError("a name part is not a set") }
            var values: [String] = []
            for attribute in attributes {
                guard case .constructed(let pair) = attribute.content else { throw CertificateSubjectError("a name attribute is not a pair") }
                let parts = Array(pair)
                guard parts.count == 2 else { throw CertificateSubjectError("a name attribute is not a pair") }
                let oid = try ASN1ObjectIdentifier(derEncoded: parts[0], withIdentifier: .objectIdentifier)
                let dotted = oid.oidComponents.map(String.init).joined(separator: ".")
                if let keyword = keywords[dotted], let text = string(parts[1]) {
                    values.append("\(keyword)=\(escape(text))")
                } else {
                    // As Java writes what it has no keyword for: the OID, and the value's DER in hex.
                    values.append("\(dotted)=#" + parts[1].encodedBytes.map { String(format: "%02x", $0) }.joined())
                }
            }
            written.append(values.joined(separator: "+"))
        }
        return written.reversed().joined(separator: ",")
    }

    /// RFC 2253's keywords (the ones Java writes).
    static let keywords: [String: String] = [
        "2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.9": "STREET",
        "0.9.2342.19200300.100.1.25": "DC", "0.9.2342.19200300.100.1.1": "UID",
    ]

    /// A directory string's text, for the string types Java writes as text (the others, such as
    /// NumericString and VisibleString, it writes as `#` and the hex of their DER).
    static func string(_ node: ASN1Node) -> String? {
        guard case .primitive(let bytes) = node.content else { return nil }
        switch node.identifier {
        case .utf8String, .printableString, .ia5String, .teletexString, .generalString:
            return String(decoding: bytes, as: UTF8.self)
        case .bmpString:
            let units = stride(from: bytes.startIndex, to: bytes.endIndex - 1, by: 2).map { UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]) }
            return String(decoding: units, as: UTF16.self)
        default:
            return nil
        }
    }

    /// Escaping as Java's RFC 2253 form does it: `,=+<>#;"\` anywhere, NUL as `\00`, and every
    /// leading and trailing space.
    static func escape(_ value: String) -> String {
        let characters = Array(value)
        let leading = characters.prefix { $0 == " " }.count
        let trailing = leading == characters.count ? 0 : characters.reversed().prefix { $0 == " " }.count
        var out = ""
        for (index, character) in characters.enumerated() {
            if character == "\u{0}" {
                out += "\\00"
                continue
            }
            if ",=+<>#;\"\\".contains(character) || index < leading || index >= characters.count - trailing {
                out.append("\\")
            }
            out.append(character)
        }
        return out
    }
}

/// A certificate file that cannot give its subject.
public struct CertificateSubjectError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
