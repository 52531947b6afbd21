using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace OrleansProtocol.Gateway.Hosting;

/// <summary>A self-signed certificate for localhost, so the STARTTLS sample runs with no setup. Never for production.</summary>
public static class DevelopmentCertificate
{
    /// <summary>
    /// The path of a PFX holding a self-signed certificate for localhost and 127.0.0.1, made on first use in the
    /// temporary directory and reused while valid.
    /// </summary>
    public static string GetOrCreatePfx()
    {
        var path = Path.Combine(Path.GetTempPath(), "orleansprotocol-dev", "localhost.pfx");
        if (File.Exists(path))
        {
            try
            {
                using var existing = X509CertificateLoader.LoadPkcs12FromFile(path, null);
                if (existing.NotAfter > DateTime.Now.AddDays(1))
                {
                    return path;
                }
            }
            catch (CryptographicException)
            {
                // Unreadable: made again below.
            }
        }

        using var certificate = CreateSelfSigned(TimeSpan.FromDays(90));
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var temporary = path + $".{Environment.ProcessId}";
        File.WriteAllBytes(temporary, certificate.Export(X509ContentType.Pfx));
        File.Move(temporary, path, overwrite: true);
        return path;
    }

    /// <summary>A self-signed server certificate for localhost and 127.0.0.1, valid from five minutes ago for <paramref name="validFor"/>.</summary>
    public static X509Certificate2 CreateSelfSigned(TimeSpan validFor)
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("localhost");
        names.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.Add(validFor));
    }
}
