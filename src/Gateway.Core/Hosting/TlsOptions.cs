using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;

namespace OrleansProtocol.Gateway;

/// <summary>Whether a TLS listener asks its clients for a certificate.</summary>
public enum ClientCertificateMode
{
    /// <summary>No client certificate is asked for (Kestrel's default).</summary>
    NoCertificate,

    /// <summary>A client certificate is asked for; connections without one are accepted.</summary>
    AllowCertificate,

    /// <summary>A client certificate is required; handshakes without one fail.</summary>
    RequireCertificate,
}

/// <summary>TLS termination for a listener. Off unless <see cref="CertificatePath"/> is set.</summary>
public sealed class TlsOptions
{
    /// <summary>The server certificate: a PKCS#12 file (<c>.pfx</c>/<c>.p12</c>) or a PEM certificate (with <see cref="KeyPath"/>).</summary>
    public string? CertificatePath { get; set; }

    /// <summary>The PEM private key, when <see cref="CertificatePath"/> is a PEM certificate without its key.</summary>
    public string? KeyPath { get; set; }

    /// <summary>The PKCS#12 file's password, if any.</summary>
    public string? CertificatePassword { get; set; }

    /// <summary>Whether to ask clients for a certificate. Defaults to none, as Kestrel.</summary>
    public ClientCertificateMode ClientCertificateMode { get; set; }

    /// <summary>
    /// How long a client has to complete the handshake, counted from the accept (after a PROXY header, the time
    /// the header took counts too); a stalled one is cut off. Defaults to 10 seconds, Kestrel's <c>HandshakeTimeout</c>
    /// (asyncio waits 60 s).
    /// </summary>
    public TimeSpan HandshakeTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Allowed protocol versions. Defaults to <see cref="SslProtocols.None"/>: the operating system's choice, as Kestrel.</summary>
    public SslProtocols SslProtocols { get; set; } = SslProtocols.None;

    /// <summary>
    /// The certificate is for STARTTLS: connections start in plaintext and TLS begins when the protocol calls
    /// <c>Transport.StartTls()</c> (SMTP's, IMAP's, XMPP's upgrade; asyncio <c>loop.start_tls</c>). Defaults to false:
    /// the handshake runs at accept.
    /// </summary>
    public bool StartTls { get; set; }

    internal bool Enabled => !string.IsNullOrEmpty(CertificatePath);

    internal X509Certificate2 LoadCertificate()
    {
        var path = CertificatePath!;
        var extension = Path.GetExtension(path).ToLowerInvariant();
        return extension is ".pfx" or ".p12"
            ? X509CertificateLoader.LoadPkcs12FromFile(path, CertificatePassword)
            : X509Certificate2.CreateFromPemFile(path, KeyPath);
    }
}
