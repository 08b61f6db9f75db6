# Device-side building blocks of Invoke-CMBootstrap.ps1 and Save-CMBootstrapPin.ps1: base64url,
# RFC 7638 thumbprints, RS256 verification with JWKs, the pinned key set and its rotation through
# /api/jwks/signed, device proofs signed with the Entra ID device certificate, and HTTPS requests
# that never follow a redirect. Windows PowerShell 5.1, .NET Framework 4.6+ APIs only; mirrors
# client/cmbootstrap_client.py (keep the two in step). Dot-source it:
#     . "$PSScriptRoot\CMBootstrap.Device.ps1"

Set-StrictMode -Version 2.0

$script:JwksType = 'cmboot-jwks+jwt'
$script:BundleType = 'cmboot-bundle+jwt'
$script:ProofType = 'cmboot-device-proof+jwt'
$script:ClockSkewSeconds = 300

function ConvertFrom-Base64Url([string] $Text) {
    if ($Text -cnotmatch '^[A-Za-z0-9_-]*$') { throw 'Invalid base64url text.' }
    $s = $Text.Replace('-', '+').Replace('_', '/')
    switch ($s.Length % 4) {
        1 { throw 'Invalid base64url text.' }
        2 { $s += '==' }
        3 { $s += '=' }
    }
    return , [Convert]::FromBase64String($s)  # the comma keeps byte[] from being unrolled
}

function ConvertTo-Base64Url([byte[]] $Bytes) {
    return [Convert]::ToBase64String($Bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_')
}

function Get-Sha256Base64Url([byte[]] $Bytes) {
    $sha = [Security.Cryptography.SHA256]::Create()
    try { return ConvertTo-Base64Url $sha.ComputeHash($Bytes) } finally { $sha.Dispose() }
}

function ConvertTo-JsonBase64Url($Value) {
    $json = ConvertTo-Json -InputObject $Value -Compress -Depth 5
    return ConvertTo-Base64Url ([Text.Encoding]::UTF8.GetBytes($json))
}

function ConvertFrom-JsonBase64Url([string] $Part) {
    return [Text.Encoding]::UTF8.GetString((ConvertFrom-Base64Url $Part)) | ConvertFrom-Json
}

function Get-JsonNames($Object) {
    return @($Object.PSObject.Properties | ForEach-Object { $_.Name } | Sort-Object)
}

function Get-JsonNamesText($Object) { return ((Get-JsonNames $Object) -join ',') }

# RFC 7638: SHA-256 of {"e":..,"kty":"RSA","n":..}; n and e are base64url, so nothing to escape.
function Get-JwkThumbprint($Jwk) {
    if ($Jwk.kty -cne 'RSA' -or [string] $Jwk.n -cnotmatch '^[A-Za-z0-9_-]+$' -or [string] $Jwk.e -cnotmatch '^[A-Za-z0-9_-]+$') {
        throw 'Not an RSA JWK.'
    }
    $canonical = '{"e":"' + $Jwk.e + '","kty":"RSA","n":"' + $Jwk.n + '"}'
    return Get-Sha256Base64Url ([Text.Encoding]::ASCII.GetBytes($canonical))
}

# The RSA keys of a JWK Set by their computed thumbprint: a kid member is never trusted.
function Get-JwkMap($Jwks) {
    $map = @{}
    foreach ($jwk in @($Jwks.keys)) {
        try { $map[(Get-JwkThumbprint $jwk)] = $jwk } catch { continue }
    }
    return $map
}

function Test-JwsSignature([string[]] $Parts, $Jwk) {
    $parameters = New-Object System.Security.Cryptography.RSAParameters
    $parameters.Modulus = ConvertFrom-Base64Url $Jwk.n
    $parameters.Exponent = ConvertFrom-Base64Url $Jwk.e
    $rsa = New-Object System.Security.Cryptography.RSACryptoServiceProvider
    try {
        $rsa.ImportParameters($parameters)
        $signed = [Text.Encoding]::ASCII.GetBytes($Parts[0] + '.' + $Parts[1])
        return $rsa.VerifyData($signed, 'SHA256', (ConvertFrom-Base64Url $Parts[2]))
    } finally { $rsa.Dispose() }
}

# Header and signature of a compact JWS of type $Type signed (RS256) by one of $Keys (thumbprint
# -> JWK); returns @{ Header; Claims; Kid }. Only alg, typ and kid may be in the header.
function Read-VerifiedJws([string] $Jws, [string] $Type, [hashtable] $Keys, [string] $What) {
    $parts = $Jws.Trim().Split('.')
    if ($parts.Count -ne 3) { throw "$What refused: not a compact JWS." }
    $header = ConvertFrom-JsonBase64Url $parts[0]
    if ((Get-JsonNamesText $header) -cne 'alg,kid,typ') { throw "$What refused: unexpected header parameters." }
    if ($header.typ -cne $Type -or $header.alg -cne 'RS256') { throw "$What refused: not an RS256 $Type." }
    $kid = [string] $header.kid
    if (-not $Keys.ContainsKey($kid)) { throw "$What refused: signed by a key that is not pinned." }
    if (-not (Test-JwsSignature $parts $Keys[$kid])) { throw "$What refused: bad signature." }
    return @{ Header = $header; Claims = (ConvertFrom-JsonBase64Url $parts[1]); Kid = $kid }
}

function Get-UnixTime { return [DateTimeOffset]::UtcNow.ToUnixTimeSeconds() }

# --- HTTP: https only, no redirects (credentials never follow one), problem text on errors -----
function Invoke-BootstrapRequest([string] $Method, [string] $Url, [hashtable] $Headers, [byte[]] $Body, [string] $Accept) {
    if (-not $Url.StartsWith('https://', [StringComparison]::OrdinalIgnoreCase)) { throw "Refusing $Url`: https is required." }
    $request = [Net.HttpWebRequest]::Create($Url)
    $request.Method = $Method
    $request.AllowAutoRedirect = $false
    $request.Timeout = 30000
    $request.ReadWriteTimeout = 30000
    if ($Accept) { $request.Accept = $Accept }
    if ($Headers) { foreach ($name in $Headers.Keys) { $request.Headers.Add($name, [string] $Headers[$name]) } }
    $where = $Url.Split('?')[0]
    try {
        if ($null -ne $Body) {
            $request.ContentType = 'application/json'
            $request.ContentLength = $Body.Length
            $stream = $request.GetRequestStream()
            try { $stream.Write($Body, 0, $Body.Length) } finally { $stream.Close() }
        }
        $response = $request.GetResponse()  # a 3xx comes back here: AllowAutoRedirect is off
    } catch {
        $web = $_.Exception
        while ($web -and -not ($web -is [Net.WebException])) { $web = $web.InnerException }
        if (-not $web -or -not $web.Response) { throw "$where not reachable: $($_.Exception.Message)" }
        $response = $web.Response
    }
    try {
        $status = [int] $response.StatusCode
        $reader = New-Object IO.StreamReader($response.GetResponseStream(), [Text.Encoding]::UTF8)
        $text = $reader.ReadToEnd()
    } finally { $response.Close() }
    if ($status -lt 200 -or $status -gt 299) {
        if ($text.Length -gt 2000) { $text = $text.Substring(0, 2000) }
        throw "$where answered $status`: $text"
    }
    return $text
}

# --- the pinned key set ---------------------------------------------------------------------
# The pin file is a JWK Set plus the iat of the signed set it came from: {"keys": [...], "iat": n}.
function Read-PinnedJwks([string] $Path) {
    if (-not (Test-Path -LiteralPath $Path)) {
        throw "No pinned key set at $Path`: create it once with Save-CMBootstrapPin.ps1 and compare the thumbprints."
    }
    $pin = [IO.File]::ReadAllText($Path) | ConvertFrom-Json
    if ((Get-JwkMap $pin).Count -eq 0) { throw "Pinned key set $Path holds no RSA key." }
    return $pin
}

function Save-PinnedJwks([string] $Path, $Keys, [long] $IssuedAt) {
    $json = ConvertTo-Json -InputObject ([ordered] @{ keys = @($Keys); iat = $IssuedAt }) -Depth 5
    $temporary = "$Path.$PID.tmp"
    [IO.File]::WriteAllText($temporary, $json)  # UTF-8 without BOM
    if (Test-Path -LiteralPath $Path) { [IO.File]::Replace($temporary, $Path, $null) } else { [IO.File]::Move($temporary, $Path) }
}

# A signed set's keys and iat when it verifies with one of $Trusted and is current; each key's
# kid must be its own thumbprint and the signing key must be in the set.
function Read-SignedJwks([string] $Jws, [hashtable] $Trusted) {
    $verified = Read-VerifiedJws $Jws $script:JwksType $Trusted 'Key set'
    $claims = $verified.Claims
    $names = Get-JsonNames $claims
    if ($names -notcontains 'iat' -or $names -notcontains 'exp' -or $names -notcontains 'keys') { throw 'Key set refused: keys, iat and exp are required.' }
    $now = Get-UnixTime
    if ([long] $claims.exp -lt $now - $script:ClockSkewSeconds) { throw 'Key set refused: the signed key set has expired.' }
    if ([long] $claims.iat -gt $now + $script:ClockSkewSeconds) { throw 'Key set refused: the signed key set is dated in the future.' }
    $keys = @($claims.keys)
    if ($keys.Count -eq 0) { throw 'Key set refused: no keys.' }
    foreach ($jwk in $keys) {
        if ($jwk.kty -cne 'RSA' -or [string] $jwk.kid -cne (Get-JwkThumbprint $jwk)) { throw 'Key set refused: a key whose kid is not its RFC 7638 thumbprint.' }
    }
    if (-not (Get-JwkMap $claims).ContainsKey($verified.Kid)) { throw 'Key set refused: the signing key is not in the set it signs.' }
    return @{ Jwks = $keys; IssuedAt = [long] $claims.iat; Signer = $verified.Kid }
}

# The install path's only key update: a newer set signed by a pinned key replaces the pin.
# Anything else leaves the pin as it was (the bundle is then checked with the pinned keys).
function Update-PinnedJwks([string] $ApiBaseUrl, [string] $Path) {
    $pin = Read-PinnedJwks $Path
    $pinnedAt = 0L
    if ((Get-JsonNames $pin) -contains 'iat') { $pinnedAt = [long] $pin.iat }
    try {
        $jws = Invoke-BootstrapRequest 'GET' "$ApiBaseUrl/jwks/signed" @{} $null 'application/jose'
        $pinnedKeys = Get-JwkMap $pin
        $signed = Read-SignedJwks $jws $pinnedKeys
        if ($signed.IssuedAt -lt $pinnedAt) {
            # The same keys signed earlier (by another instance) change nothing; other keys do.
            $sameKeys = (@($pinnedKeys.Keys | Sort-Object) -join ',') -ceq (@((Get-JwkMap ([pscustomobject] @{ keys = $signed.Jwks })).Keys | Sort-Object) -join ',')
            if ($sameKeys) { return $pin }
            throw 'Key set refused: older than the pinned key set (a replayed set?).'
        }
    } catch {
        Write-Warning "Key set not updated ($($_.Exception.Message)); the pin is unchanged."
        return $pin
    }
    Save-PinnedJwks $Path $signed.Jwks $signed.IssuedAt
    return Read-PinnedJwks $Path
}

# --- the device's identity ------------------------------------------------------------------
# The Entra ID device certificate: LocalMachine\My, issuer CN MS-Organization-Access (the real
# issuer name also holds DC= and OU= parts), subject CN=<deviceId>, with its private key (often
# in the TPM), valid now; the newest first.
function Find-DeviceCertificate([string] $DeviceId) {
    $now = Get-Date
    $simple = [Security.Cryptography.X509Certificates.X509NameType]::SimpleName
    $found = @(Get-ChildItem -Path 'Cert:\LocalMachine\My' | Where-Object {
            $_.HasPrivateKey -and $_.NotBefore -le $now -and $_.NotAfter -gt $now -and
            $_.GetNameInfo($simple, $true) -eq 'MS-Organization-Access' -and
            (-not $DeviceId -or $_.GetNameInfo($simple, $false) -eq $DeviceId)
        } | Sort-Object -Property NotAfter -Descending)
    if ($found.Count -eq 0) { throw "No Entra ID device certificate (issuer MS-Organization-Access, subject CN=$DeviceId, with its private key) in Cert:\LocalMachine\My. Is the device joined, and does this run as SYSTEM?" }
    return $found[0]
}

# A Device-Proof (RS256, typ cmboot-device-proof+jwt, x5c the certificate) bound to one request.
function New-DeviceProof {
    param(
        [Parameter(Mandatory = $true)] [Security.Cryptography.X509Certificates.X509Certificate2] $Certificate,
        [Parameter(Mandatory = $true)] [string] $DeviceId,
        [Parameter(Mandatory = $true)] [string] $Method,
        [Parameter(Mandatory = $true)] [string] $Url,
        [string] $Nonce,
        [string] $Token,
        [byte[]] $Body
    )
    $header = [ordered] @{ alg = 'RS256'; typ = $script:ProofType; x5c = @([Convert]::ToBase64String($Certificate.RawData)) }
    $claims = [ordered] @{
        deviceId = $DeviceId
        htm      = $Method.ToUpperInvariant()
        htu      = $Url.Split('?')[0].Split('#')[0]
        iat      = Get-UnixTime
        jti      = [guid]::NewGuid().ToString()
    }
    if ($Nonce) { $claims['nonce'] = $Nonce }
    if ($Token) { $claims['ath'] = Get-Sha256Base64Url ([Text.Encoding]::ASCII.GetBytes($Token)) }
    if ($null -ne $Body) { $claims['bodySha256'] = Get-Sha256Base64Url $Body }
    $signingInput = (ConvertTo-JsonBase64Url $header) + '.' + (ConvertTo-JsonBase64Url $claims)
    $rsa = [Security.Cryptography.X509Certificates.RSACertificateExtensions]::GetRSAPrivateKey($Certificate)
    if (-not $rsa) { throw 'The device certificate has no usable RSA private key (run as SYSTEM).' }
    try {
        $signature = $rsa.SignData([Text.Encoding]::ASCII.GetBytes($signingInput),
            [Security.Cryptography.HashAlgorithmName]::SHA256,
            [Security.Cryptography.RSASignaturePadding]::Pkcs1)
    } finally { $rsa.Dispose() }
    return $signingInput + '.' + (ConvertTo-Base64Url $signature)
}

# The headers one request carries for -Auth device|user|device+user.
function Get-AuthHeaders([string] $Auth, $Certificate, [string] $DeviceId, [string] $Token, [string] $Method, [string] $Url, [string] $Nonce, [byte[]] $Body) {
    $headers = @{}
    $boundToken = $null
    if ($Auth -ne 'device') {
        $headers['Authorization'] = "Bearer $Token"
        $boundToken = $Token
    }
    if ($Auth -ne 'user') {
        $headers['Device-Proof'] = New-DeviceProof -Certificate $Certificate -DeviceId $DeviceId -Method $Method -Url $Url -Nonce $Nonce -Token $boundToken -Body $Body
    }
    return $headers
}
